"""AlgorithmSpec: the algo config group, validation, and build_samples dispatching on switches (docs/algorithm.md §6)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from steprl.algo.loss import PolicyLoss
from steprl.algo.sampling import SRTrajScheduler, UniformScheduler
from steprl.algo.spec import (
    AlgorithmSpec,
    build_loss,
    build_recorder,
    build_samples,
    build_samples_with_origins,
    build_scheduler,
)
from steprl.algo.success_rate import SuccessRateRecorder
from steprl.types import Observation, Task, Trajectory, Turn
from tests.train_config import CONF, algo_spec

INV_SQRT2 = 0.7071068  # group [1, 0]: mean 0.5, sample std sqrt(0.5), A = ±0.5 / 0.7071068


def trajectory(task_id: str, score: float, steps: int = 2, env_error: str | None = None) -> Trajectory:
    task = Task(id=task_id, family="f", instruction="do it")
    turns = [
        Turn(observation=Observation(np.zeros((2, 2, 3), np.uint8), "do it", state_hash=f"{task_id}{t}"), response=f"r{t}")
        for t in range(steps)
    ]
    return Trajectory(task=task, turns=turns, score=score, success=score >= 1.0, env_error=env_error)


def a_round() -> list[Trajectory]:
    return [trajectory("a", 1.0), trajectory("a", 0.0), trajectory("a", 1.0, env_error="crash")]


# ------------------------------------------------------------------------------ the algo config group

ALGORITHMS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))


@pytest.mark.parametrize(
    ("name", "sampling", "level", "advantage", "failed", "augment"),
    [
        ("step", "sr_traj", "step", "sr_adv", False, True),
        ("t_grpo", "uniform", "trajectory", "grpo", True, False),
        ("gigpo", "uniform", "step", "gigpo", True, False),
        ("step_no_srtraj", "uniform", "step", "sr_adv", False, True),
        ("step_no_sradv", "sr_traj", "step", "grpo", True, True),
        ("step_no_slgrpo", "sr_traj", "step", "sr_adv", False, False),
        ("step_no_both", "uniform", "step", "grpo", True, True),
        ("step_decomp_only", "uniform", "step", "grpo", True, False),
    ],
)
def test_algorithms(name, sampling, level, advantage, failed, augment):
    spec = algo_spec(name)
    assert (spec.name, spec.sampling, spec.sample_level, spec.advantage) == (name, sampling, level, advantage)
    assert (spec.use_failed_trajectories, spec.augment) == (failed, augment)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algo_file_is_valid_and_named_after_itself(name):
    spec = algo_spec(name)
    spec.validate_budget(8)
    assert spec.name == name


def test_step_yaml_is_the_schema_defaults():
    """conf/algo/step.yaml writes every knob out for users; it must equal AlgorithmSpec's defaults, so
    the values are defined once (the dataclass) and the file can never drift from them."""
    from omegaconf import OmegaConf

    written = OmegaConf.to_container(OmegaConf.load(CONF / "algo" / "step.yaml"))
    assert written.pop("_target_") == "steprl.algo.spec.AlgorithmSpec.create"
    assert written == dataclasses.asdict(AlgorithmSpec())


def test_other_algo_files_state_only_differences():
    from omegaconf import OmegaConf

    defaults = dataclasses.asdict(AlgorithmSpec())
    for name in ALGORITHMS:
        if name == "step":
            continue
        written = OmegaConf.to_container(OmegaConf.load(CONF / "algo" / f"{name}.yaml"))
        assert written.pop("defaults") == ["step", "_self_"], name
        same = sorted(k for k, v in written.items() if k != "name" and defaults[k] == v)
        assert same == [], f"conf/algo/{name}.yaml repeats STEP's values of {same}"


def test_step_defaults_are_the_papers():
    spec = AlgorithmSpec()
    assert (spec.s0, spec.s_low, spec.kappa, spec.alpha) == (0.6, 0.2, 10.0, 0.5)
    assert (spec.history_responses, spec.history_screenshots, spec.max_images) == (3, 0, 5)
    assert (spec.clip_low, spec.clip_high, spec.kl_coef, spec.loss_agg, spec.ppo_epochs) == (0.2, 0.3, 0.0, "token-mean", 2)
    assert (algo_spec("gigpo").gigpo_omega, algo_spec("gigpo").gigpo_gamma) == (1.0, 0.95)


def test_overrides_and_unknown_keys():
    assert algo_spec("step", s0=0.5).s0 == 0.5
    with pytest.raises(ValueError, match="did you mean 's0'"):
        AlgorithmSpec.create(s00=0.5)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"s0": 1.0}, "algo.s0=1.0 must be in"),
        ({"s0": 0.0}, "algo.s0=0.0"),
        ({"kappa": 0.0}, "algo.kappa"),
        ({"alpha": 0.0}, "algo.alpha"),
        ({"s_low": 0.6}, "must be below algo.s0"),
        ({"use_failed_trajectories": True}, "use_failed_trajectories=false"),
        ({"advantage": "gigpo", "sample_level": "trajectory", "augment": False}, "sample_level=step"),
        ({"sample_level": "trajectory"}, "augments step samples"),
        ({"sampling": "greedy"}, "algo.sampling='greedy'"),
        ({"sr_adv_unseen": 2.0}, "sr_adv_unseen"),
        ({"history_screenshots": 4}, "history_screenshots"),
        ({"aug_reward": "judge"}, "aug_reward"),
        ({"clip_low": -0.1}, "clip_low"),
        ({"ppo_epochs": 0}, "ppo_epochs"),
        ({"failed_credit": True, "advantage": "grpo", "use_failed_trajectories": True}, "failed_credit=true adds step advantages"),
        ({"failed_credit_baseline": "zero"}, "failed_credit_baseline"),
        ({"failed_credit_decay": 0.0}, "failed_credit_decay"),
        ({"failed_credit_min_visits": 0.0}, "failed_credit_min_visits"),
        ({"aug_outcome_horizon": 0}, "aug_outcome_horizon"),
        ({"aug_outcome_continuations": 0}, "aug_outcome_continuations"),
        ({"aug_select": "median"}, "aug_select"),
        ({"beta_rule": "median"}, "beta_rule"),
        ({"beta_decay": 0.0}, "beta_decay"),
        ({"beta_prior_a": 0.0}, "beta_prior_a"),
        ({"beta_p_low": 0.7}, "beta_p_low"),
        ({"beta_aug_q": 0.0}, "beta_aug_q"),
        ({"beta_min_informative": 1.5}, "beta_min_informative"),
    ],
)
def test_bad_values_give_one_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        AlgorithmSpec(**overrides)


def test_all_bad_values_are_listed_at_once():
    with pytest.raises(ValueError) as error:
        AlgorithmSpec(s0=2.0, kappa=-1.0, aug_weight=-1.0)
    text = str(error.value)
    assert "algo.s0" in text and "algo.kappa" in text and "algo.aug_weight" in text


def test_s_low_above_s0_is_fine_without_sr_traj():
    AlgorithmSpec(sampling="uniform", s0=0.3, s_low=0.4)


def test_validate_budget():
    algo_spec("step").validate_budget(4)
    with pytest.raises(ValueError, match="N >= 4"):
        algo_spec("step").validate_budget(3)  # 3/2 − 1 = 0 alternatives
    with pytest.raises(ValueError, match="N >= 2"):
        algo_spec("t_grpo").validate_budget(1)
    algo_spec("step_no_slgrpo").validate_budget(1)  # SR-Adv needs no group
    with pytest.raises(ValueError, match="rollouts_per_task=0"):
        algo_spec("step_no_slgrpo").validate_budget(0)


def test_from_config_rejects_typos():
    spec = AlgorithmSpec.from_config({"_target_": "ignored", "name": "x", "s0": 0.5})
    assert spec.s0 == 0.5
    with pytest.raises(ValueError, match="did you mean 'kappa'"):
        AlgorithmSpec.from_config({"kapa": 5})


# ------------------------------------------------------------------------------ build_samples


def test_step_samples_only_from_successes_with_sr_adv():
    recorder = SuccessRateRecorder(prior={"a": 0.25})
    samples = build_samples(algo_spec("step"), a_round(), recorder)
    assert len(samples) == 2  # the success's two steps; the failure and the env error give nothing
    assert all(s.source == "step" and s.advantage == 0.75 and s.task_id == "a" for s in samples)  # 1 − 0.25


def test_t_grpo_whole_trajectories_with_group_advantages():
    samples = build_samples(algo_spec("t_grpo"), a_round(), SuccessRateRecorder())
    assert [s.source for s in samples] == ["trajectory", "trajectory"]
    assert [s.advantage for s in samples] == pytest.approx([INV_SQRT2, -INV_SQRT2], rel=1e-5)
    assert all(t.trainable for t in samples[0].dialogue.turns) and len(samples[0].dialogue.turns) == 2


def test_without_sr_adv_every_step_gets_the_broadcast_grpo_advantage():
    samples = build_samples(algo_spec("step_no_sradv"), a_round(), SuccessRateRecorder())
    assert [s.advantage for s in samples] == pytest.approx([INV_SQRT2] * 2 + [-INV_SQRT2] * 2, rel=1e-5)


def test_gigpo_gives_per_step_advantages():
    # Both valid rollouts visit anchors "a0" then "a1"; scores [1, 0] → A^E (mean only) = ±0.5.
    # "a0" returns [γ·1 = 0.95, 0]: mean 0.475 → A^S = ±0.475; "a1" returns [1, 0] → A^S = ±0.5.
    samples = build_samples(algo_spec("gigpo"), a_round(), SuccessRateRecorder())
    assert [s.advantage for s in samples] == pytest.approx([0.5 + 0.475, 0.5 + 0.5, -0.5 - 0.475, -0.5 - 0.5])


def test_dispatch_reads_switches_not_the_name():
    spec = AlgorithmSpec(name="step", advantage="grpo", use_failed_trajectories=True)
    assert [s.advantage for s in build_samples(spec, a_round(), SuccessRateRecorder())] == pytest.approx(
        [INV_SQRT2] * 2 + [-INV_SQRT2] * 2, rel=1e-5
    )


def test_success_threshold_decides_what_is_decomposed():
    partial = [trajectory("a", 0.5), trajectory("a", 0.0)]
    recorder = SuccessRateRecorder(prior={"a": 0.5})
    assert build_samples(AlgorithmSpec(), partial, recorder) == []  # 0.5 < 1.0: no success
    samples = build_samples(AlgorithmSpec(success_threshold=0.5), partial, recorder)
    assert len(samples) == 2 and samples[0].advantage == 0.5


def test_history_window_comes_from_the_spec():
    spec = AlgorithmSpec(history_responses=1, history_screenshots=1)
    samples = build_samples(spec, [trajectory("a", 1.0, steps=3)], SuccessRateRecorder())
    assert [t.screenshot is not None for t in samples[2].dialogue.turns] == [True, True]
    assert samples[0].advantage == 0.0  # unseen task, this round's rate 1/1: 1 − 1


# ------------------------------------------------------------------------------ builders


def test_builders(tmp_path):
    assert isinstance(build_scheduler(AlgorithmSpec(), ["a", "b"], 1, seed=0), SRTrajScheduler)
    assert isinstance(build_scheduler(algo_spec("t_grpo"), ["a", "b"], 1, seed=0), UniformScheduler)
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"a": 0.4}))
    recorder = build_recorder(AlgorithmSpec(alpha=0.3, success_rate_prior=str(prior)))
    assert recorder.rates == {"a": 0.4} and recorder.alpha == 0.3
    loss = build_loss(AlgorithmSpec(clip_high=0.28, dual_clip=3.0, loss_agg="seq-mean-token-mean"))
    assert loss == PolicyLoss(clip_low=0.2, clip_high=0.28, dual_clip=3.0, agg="seq-mean-token-mean")


@pytest.mark.parametrize(
    ("name", "failed_credit", "aug_reward", "sampling", "aug_select"),
    [
        ("step", False, "equivalence", "sr_traj", "s_low"),
        ("step_failed_credit", True, "equivalence", "sr_traj", "s_low"),
        ("step_outcome", False, "outcome", "sr_traj", "s_low"),
        ("step_beta", False, "equivalence", "beta", "beta"),
        ("step_all_extensions", True, "outcome", "beta", "beta"),
    ],
)
def test_extension_files_switch_only_their_extension(name, failed_credit, aug_reward, sampling, aug_select):
    spec = algo_spec(name)
    assert (spec.failed_credit, spec.aug_reward, spec.sampling, spec.aug_select) == (failed_credit, aug_reward, sampling, aug_select)
    assert (spec.advantage, spec.sample_level, spec.augment, spec.use_failed_trajectories) == ("sr_adv", "step", True, False)


def test_beta_scheduler_and_state_record_builders():
    from steprl.algo.adaptive_thresholds import BetaScheduler
    from steprl.algo.spec import build_state_record

    scheduler = build_scheduler(AlgorithmSpec(sampling="beta", beta_rule="interval", beta_decay=0.25, beta_prior_b=3.0), ["a"], 1, seed=0)
    assert isinstance(scheduler, BetaScheduler)
    assert scheduler.knobs["rule"] == "interval" and (scheduler.record.decay, scheduler.record.prior_b) == (0.25, 3.0)
    assert build_state_record(AlgorithmSpec()) is None
    assert build_state_record(AlgorithmSpec(failed_credit=True, failed_credit_decay=0.5)).decay == 0.5
    assert AlgorithmSpec(aug_select="beta").uses_beta_record and not AlgorithmSpec().uses_beta_record


def test_failed_credit_samples_by_hand():
    """Record of past rounds for task a: K = 1 of N = 3, state a0 visited 3 times (1 success), a1 once
    (the success). This round: one success (a0, a1), one failure (a0, a1), one env error. For the
    failure, leave-one-out: N = 5 − 1 = 4, K = 2, p = 0.5; v(a0) = (2 + 2·0.5)/(4 + 2) = 0.5,
    v(a1) = (2 + 1)/(2 + 2) = 0.75; A_0 = 0.5·(0.75 − 0.5) = 0.125; A_1: the final state is unknown → 0,
    no sample. The success keeps SR-Adv 1 − 0.25."""
    from steprl.algo.failed_credit import StateSuccessRecord

    record = StateSuccessRecord()
    record.load_state_dict({"totals": {"a": [1, 3]}, "states": {"a": {"a0": [1, 3], "a1": [1, 1]}}})
    round_ = a_round()
    pairs = build_samples_with_origins(AlgorithmSpec(failed_credit=True), round_, SuccessRateRecorder(prior={"a": 0.25}), record)
    assert [(origin.trajectory is round_[1], origin.turn_index, sample.advantage) for sample, origin in pairs] == [
        (False, 0, 0.75), (False, 1, 0.75), (True, 0, pytest.approx(0.125))
    ]  # fmt: skip
    assert len(build_samples_with_origins(AlgorithmSpec(), round_, SuccessRateRecorder(prior={"a": 0.25}), record)) == 2  # off


def test_spec_is_a_plain_dataclass():
    fields = {f.name for f in dataclasses.fields(AlgorithmSpec)}
    assert {"s0", "kappa", "s_low", "alpha", "advantage", "sampling"} <= fields


def test_origins_point_back_to_trajectory_and_turn():
    round_ = a_round()
    pairs = build_samples_with_origins(algo_spec("step_no_sradv"), round_, SuccessRateRecorder())
    assert [(origin.trajectory is round_[0], origin.turn_index) for _, origin in pairs[:2]] == [(True, 0), (True, 1)]
    assert [origin.turn_index for _, origin in pairs] == [0, 1, 0, 1] and pairs[2][1].trajectory is round_[1]
    whole = build_samples_with_origins(algo_spec("t_grpo"), round_, SuccessRateRecorder())
    assert [origin.turn_index for _, origin in whole] == [None, None]

