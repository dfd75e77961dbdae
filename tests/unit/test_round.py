"""One real RL round (`RoundRunner.run`) with a toy env and a fake policy: no Lightning, no model.

CounterEnv tasks 0, 1, 2 have goals 1, 2, 3. The scripted policy solves goals 1 and 2 (up to the goal,
then finished()) and fails goal 3, so every round's outcome is known by hand: k/n = 1, 1, 0.
"""

from __future__ import annotations

import math

import pytest

from steprl.algo.spec import AlgorithmSpec
from steprl.algo.success_rate import SuccessRateRecorder
from steprl.envs import make
from steprl.rollout import InProcessPool, RolloutCollector
from tests.doubles import parse_counter_action
from steprl.round import RoundRunner, shard_groups
from tests.doubles import ScriptedTokenPolicy

A, B, C = "counter-train-0", "counter-train-1", "counter-train-2"  # goals 1, 2, 3


def runner_with_prior(prior: dict[str, float], **algo) -> RoundRunner:
    pool = InProcessPool("counter", {"num_tasks": 3, "max_steps": 6}, num_workers=2)
    collector = RolloutCollector(pool)
    tasks = make("counter", num_tasks=3).tasks("train")  # the env's own task list
    spec = AlgorithmSpec(**{"s0": 0.7, "s_low": 0.6, **algo})
    runner = RoundRunner(
        train_tasks=tasks, collector=collector, algo=spec, tasks_per_epoch=3, rollouts_per_task=4,
        parse_action=lambda text: parse_counter_action(text)[0], screen_size=(16, 12), seed=0,
    )  # fmt: skip
    runner.recorder = SuccessRateRecorder(alpha=0.5, prior=prior)
    return runner


def test_one_round_record_budget_advantages_and_slgrpo_groups():
    runner = runner_with_prior({A: 0.9, B: 0.1, C: 0.5})
    policy = ScriptedTokenPolicy(solvable_up_to=2, logp=-0.5)
    try:
        round_ = runner.run(0, policy)
    finally:
        runner.collector.close()
    report = round_.report
    counts = {task: report.task_counts.get(task, (0, 0)) for task in (A, B, C)}

    # SR-Traj budget: B·N = 12 copies, always. p_rep(0.9) = 1/(1+e^-(10·0.2)) = 0.881, so A hands copies
    # to the cache C_Q = {j: 0 < ŝ_j < 0.7} = {B, C}; nothing is replaced by A itself.
    assert report.trajectories == 12 and sum(n for _, n in report.task_counts.values()) == 12
    assert report.cache_size == 2
    assert counts[A][1] < 4 and counts[B][1] + counts[C][1] > 8
    assert counts[A][1] + report.replaced_copies >= 4

    # The record: ŝ ← 0.5·ŝ + 0.5·k/n with k/n = 1, 1, 0.
    assert counts[A][0] == counts[A][1] and counts[B][0] == counts[B][1] and counts[C][0] == 0
    assert runner.recorder.get(A) == pytest.approx(0.5 * 0.9 + 0.5 * 1.0 if counts[A][1] else 0.9)  # 0.95 (kept if not rolled out)
    assert runner.recorder.get(B) == pytest.approx(0.5 * 0.1 + 0.5 * 1.0)  # 0.55
    assert runner.recorder.get(C) == pytest.approx(0.5 * 0.5 + 0.5 * 0.0)  # 0.25

    # SR-Adv: every step of a successful trajectory gets 1 − ŝ_i read BEFORE the update; C fails: no samples.
    steps = [s for s in round_.samples if s.source == "step"]
    by_task = {task: [s.advantage for s in steps if s.task_id == task] for task in (A, B, C)}
    assert by_task[A] == pytest.approx([1 - 0.9] * (2 * counts[A][1]))  # A: up, finished
    assert by_task[B] == pytest.approx([1 - 0.1] * (3 * counts[B][1]))  # B: up, up, finished
    assert by_task[C] == []

    # SL-GRPO: tasks with ŝ (after the update) ≤ s_low = 0.6 -> B only (0.55); C has no step samples.
    # K = N/2 − 1 = 1 alternative (press down, never a_t): group [1, 0], mean 0.5, sample std 0.7071.
    augmented = [s for s in round_.samples if s.source == "augment"]
    assert report.aug_samples == len(augmented) == 2 * len(by_task[B])
    assert {s.task_id for s in augmented} == {B} and {s.group for s in augmented} == {f"{B}/aug"}
    pairs = list(zip(augmented[0::2], augmented[1::2]))  # original first, then its alternative
    for original, alternative in pairs:
        assert original.advantage == pytest.approx(0.5 / math.sqrt(0.5), rel=1e-5)
        assert alternative.advantage == pytest.approx(-0.5 / math.sqrt(0.5), rel=1e-5)
        assert alternative.dialogue.turns[-1].response.endswith("press(key='down')")
        assert original.dialogue.turns[-1].response.endswith(("press(key='up')", "finished()"))  # y_t itself
    assert policy.generate_calls[-1] == (len(by_task[B]), 1.0)  # one batched SL-GRPO call at aug_temperature

    # Origins: every sample knows its trajectory and turn; old log-probs cover exactly its target tokens.
    assert len(round_.origins) == len(round_.samples)
    for sample, origin in zip(round_.samples, round_.origins):
        assert origin.trajectory.task.id == sample.task_id and origin.trajectory.success
        assert sample.old_logprobs == tuple([-0.5] * len(sample.dialogue.turns[-1].response_ids))
    assert report.samples == len(round_.samples) and report.env_steps_total == report.env_steps


def test_rounds_are_a_function_of_seed_and_epoch_and_state_round_trips():
    first, second = runner_with_prior({A: 0.9, B: 0.1, C: 0.5}), runner_with_prior({A: 0.9, B: 0.1, C: 0.5})
    try:
        a = first.run(0, ScriptedTokenPolicy())
        second.load_state_dict(first.state_dict())  # the state after round 0
        b = first.run(1, ScriptedTokenPolicy())
        c = second.run(1, ScriptedTokenPolicy())
    finally:
        first.collector.close()
        second.collector.close()
    assert a.report.task_counts  # round 0 ran
    assert b.report.task_counts == c.report.task_counts and b.report.rates == c.report.rates
    assert [s.advantage for s in b.samples] == [s.advantage for s in c.samples]


def test_without_slgrpo_and_with_uniform_sampling_nothing_moves():
    runner = runner_with_prior({A: 0.9, B: 0.1, C: 0.5}, sampling="uniform", augment=False)
    try:
        round_ = runner.run(0, ScriptedTokenPolicy())
    finally:
        runner.collector.close()
    assert {task: n for task, (_, n) in round_.report.task_counts.items()} == {A: 4, B: 4, C: 4}
    assert round_.report.replaced_copies == 0 and round_.report.aug_samples == 0


def test_shards_keep_a_task_on_one_rank():
    copies = ["a"] * 4 + ["b"] * 4 + ["c"] * 2 + ["d"] * 2
    shards = shard_groups(copies, 2)
    assert [copies[i] for i in shards[0]] == ["a"] * 4 + ["c"] * 2
    assert [copies[i] for i in shards[1]] == ["b"] * 4 + ["d"] * 2


def test_the_record_snapshot_each_part_reads_is_a_knob():
    """sr_adv_record=after: SR-Adv reads ŝ after this round's update (A: 1 − 0.95, B: 1 − 0.55);
    slgrpo_record=before: SL-GRPO compares the record before it with s_low (B: 0.1 ≤ 0.6, and A: 0.9 not)."""
    runner = runner_with_prior({A: 0.9, B: 0.1, C: 0.5}, sampling="uniform", sr_adv_record="after", slgrpo_record="before", s_low=0.09)
    try:
        round_ = runner.run(0, ScriptedTokenPolicy())
    finally:
        runner.collector.close()
    steps = [s for s in round_.samples if s.source == "step"]
    assert {s.task_id: round(s.advantage, 6) for s in steps} == {A: 0.05, B: 0.45}
    assert round_.report.aug_samples == 0  # s_low = 0.09 < ŝ_B before (0.1): nothing is hard enough
    runner = runner_with_prior({A: 0.9, B: 0.1, C: 0.5}, sampling="uniform", slgrpo_record="before", s_low=0.1)
    try:
        round_ = runner.run(0, ScriptedTokenPolicy())
    finally:
        runner.collector.close()
    assert {s.task_id for s in round_.samples if s.source == "augment"} == {B}  # 0.1 ≤ 0.1 before; 0.55 after would not be
