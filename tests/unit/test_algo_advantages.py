"""Advantages: T-GRPO, SR-Adv, GiGPO, SL-GRPO groups (docs/algorithm.md §3, §4, §6)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from steprl.algo.advantages import (
    episode_advantages,
    anchor_key,
    discounted_returns,
    gigpo_advantages,
    grpo_advantages,
    slgrpo_group_advantages,
    sr_adv_trajectory_advantages,
    sr_advantage,
)
from steprl.algo.success_rate import SuccessRateRecorder
from steprl.types import Observation, Task, Trajectory, Turn


def trajectory(task_id: str, score: float, states: tuple[str, ...] = ("s",), env_error: str | None = None) -> Trajectory:
    task = Task(id=task_id, family="f", instruction="do it")
    turns = [
        Turn(
            observation=Observation(np.zeros((2, 2, 3), np.uint8), "do it", state_hash=state),
            response=f"step {t}",
        )
        for t, state in enumerate(states)
    ]
    return Trajectory(task=task, turns=turns, score=score, success=score >= 1.0, env_error=env_error)


# ------------------------------------------------------------------------------ T-GRPO


def test_grpo_one_group_by_hand():
    # mean 0.5; sample std = sqrt(4·0.25 / 3) = sqrt(1/3) = 0.5773503; A = ±0.5 / (0.5773503 + 1e-6)
    advantages = grpo_advantages([1, 0, 0, 1], ["t"] * 4)
    assert advantages == pytest.approx([0.8660239, -0.8660239, -0.8660239, 0.8660239], rel=1e-6)


def test_grpo_groups_are_separate_and_groups_of_one_get_zero():
    # group g: [1, 0, 0], mean 1/3, deviations 2/3, -1/3, -1/3, var = (4/9 + 1/9 + 1/9) / 2 = 1/3
    # A = (2/3) / 0.5773503 = 1.1547005, (-1/3) / 0.5773503 = -0.5773503; group h has one member: 0
    advantages = grpo_advantages([1, 0.5, 0, 0], ["g", "h", "g", "g"], eps=0.0)
    assert advantages == pytest.approx([1.1547005, 0.0, -0.5773503, -0.5773503], rel=1e-6)


@pytest.mark.parametrize("scores", [[1, 1, 1], [0, 0, 0, 0], [0.7, 0.7, 0.7]])
def test_grpo_constant_groups_are_exactly_zero(scores):
    advantages = grpo_advantages(scores, ["t"] * len(scores))
    assert np.all(advantages == 0.0) and not np.any(np.isnan(advantages))


def test_grpo_without_std():
    assert grpo_advantages([1, 0, 0, 1], ["t"] * 4, norm_by_std=False) == pytest.approx([0.5, -0.5, -0.5, 0.5])


def test_grpo_matches_a_reference_written_with_loops():
    rng = random.Random(0)
    scores = [rng.choice([0.0, 0.25, 1.0]) for _ in range(40)]
    groups = [rng.choice("abcdefg") for _ in range(40)]
    expected = []
    for i, group in enumerate(groups):
        members = [scores[j] for j in range(len(scores)) if groups[j] == group]
        if len(members) < 2 or max(members) == min(members):
            expected.append(0.0)
            continue
        mean = sum(members) / len(members)
        std = math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
        expected.append((scores[i] - mean) / (std + 1e-6))
    assert grpo_advantages(scores, groups) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_grpo_input_errors():
    with pytest.raises(ValueError, match="one group id per score"):
        grpo_advantages([1, 0], ["t"])
    with pytest.raises(ValueError, match="NaN"):
        grpo_advantages([1, float("nan")], ["t", "t"])
    assert grpo_advantages([], []).shape == (0,)


# ------------------------------------------------------------------------------ SR-Adv


def test_sr_advantage():
    assert sr_advantage(0.25) == 0.75 and sr_advantage(1.0) == 0.0 and sr_advantage(0.0) == 1.0
    with pytest.raises(ValueError):
        sr_advantage(1.5)


def test_sr_adv_per_trajectory():
    recorder = SuccessRateRecorder(prior={"a": 0.25})
    trajectories = [
        trajectory("a", 1.0),  # 1 − 0.25
        trajectory("a", 0.0),  # failure: no samples
        trajectory("a", 1.0, env_error="crash"),  # env error: no samples
        trajectory("b", 1.0),  # b unseen: this round's k/n = 1/3 (the env error below is not counted)
        trajectory("b", 0.0),
        trajectory("b", 0.0),
        trajectory("b", 1.0, env_error="crash"),
    ]
    advantages = sr_adv_trajectory_advantages(trajectories, recorder)
    assert advantages[:3] == [0.75, None, None]
    assert advantages[3] == pytest.approx(2 / 3)  # 1 − 1/3
    assert advantages[4:] == [None, None, None]
    fixed = sr_adv_trajectory_advantages(trajectories, recorder, unseen_rate=0.5)
    assert fixed[3] == 0.5 and fixed[0] == 0.75


def test_sr_adv_reads_the_given_threshold_and_rejects_bad_unseen_rates():
    recorder = SuccessRateRecorder(prior={"a": 0.5})
    assert sr_adv_trajectory_advantages([trajectory("a", 0.5)], recorder, success_threshold=0.5) == [0.5]
    with pytest.raises(ValueError, match="sr_adv_unseen"):
        sr_adv_trajectory_advantages([trajectory("a", 1.0)], recorder, unseen_rate="mean")


# ------------------------------------------------------------------------------ GiGPO


def test_discounted_returns():
    assert discounted_returns(3, 1.0, 0.5) == pytest.approx([0.25, 0.5, 1.0])  # γ^(T−1−t)·score
    assert discounted_returns(1, 0.8, 0.95) == pytest.approx([0.8])
    assert discounted_returns(0, 1.0, 0.95).shape == (0,)


def gigpo_round() -> list[Trajectory]:
    return [
        trajectory("t", 1.0, ("S0", "S1")),  # R = [0.5, 1]   (γ = 0.5)
        trajectory("t", 0.0, ("S0", "S2", "S1")),  # R = [0, 0, 0]
        trajectory("t", 1.0, ("S0", "S3")),  # R = [0.5, 1]
        trajectory("u", 1.0, ("S0",)),  # another task: its S0 is not t's S0
        trajectory("t", 1.0, ("S0",), env_error="crash"),
    ]


def test_gigpo_by_hand_mean_only():
    # A^E (mean only) over t's scores [1, 0, 1]: mean 2/3 → [1/3, −2/3, 1/3]; u alone → 0.
    # Anchor S0 of t: returns [0.5, 0, 0.5], mean 1/3 → A^S = [1/6, −1/3, 1/6].
    # Anchor S1 of t: returns [1 (τ1, t=1), 0 (τ2, t=2)], mean 0.5 → [0.5, −0.5]. S2, S3 alone → 0.
    # ω = 1: τ1 = [1/3 + 1/6, 1/3 + 1/2]; τ2 = [−2/3 − 1/3, −2/3 + 0, −2/3 − 1/2]; τ3 = [1/3 + 1/6, 1/3 + 0].
    advantages = gigpo_advantages(gigpo_round(), omega=1.0, gamma=0.5, step_norm="mean")
    assert advantages[0] == pytest.approx([0.5, 5 / 6])
    assert advantages[1] == pytest.approx([-1.0, -2 / 3, -7 / 6])
    assert advantages[2] == pytest.approx([0.5, 1 / 3])
    assert advantages[3] == pytest.approx([0.0])
    assert advantages[4] is None


def test_gigpo_omega_scales_the_step_part():
    # ω = 2: τ1 = [1/3 + 2/6, 1/3 + 1]
    assert gigpo_advantages(gigpo_round(), omega=2.0, gamma=0.5)[0] == pytest.approx([2 / 3, 4 / 3])


def test_gigpo_mean_std():
    # S0 returns [0.5, 0, 0.5]: mean 1/3, sample std = sqrt(((1/6)² + (1/3)² + (1/6)²) / 2) = sqrt(1/12) = 0.2886751
    # A^S(τ1, S0) = (1/6) / 0.2886751 = 0.5773503; S1 [1, 0]: std = sqrt(0.5) = 0.7071068, A^S = ±0.7071068.
    # A^E with std: [1, 0, 1], std sqrt(1/3) → τ1: (1/3) / 0.5773503 = 0.5773503.
    advantages = gigpo_advantages(gigpo_round(), omega=1.0, gamma=0.5, step_norm="mean_std", episode_norm_by_std=True, eps=0.0)
    assert advantages[0] == pytest.approx([0.5773503 + 0.5773503, 0.5773503 + 0.7071068], rel=1e-6)


def test_gigpo_all_success_round_has_only_step_signal():
    # Same score everywhere: A^E = 0; returns differ only by length, S0: [0.5, 0.25] (γ = 0.5), mean 0.375.
    round_ = [trajectory("t", 1.0, ("S0", "S1")), trajectory("t", 1.0, ("S0", "S2", "S1"))]
    advantages = gigpo_advantages(round_, gamma=0.5)
    assert advantages[0] == pytest.approx([0.125, 0.0])  # S1 group: [1, 1] → 0
    assert advantages[1] == pytest.approx([-0.125, 0.0, 0.0])


def test_anchor_falls_back_to_pixels():
    same = [Observation(np.full((2, 2, 3), 7, np.uint8), "x") for _ in range(2)]
    other = Observation(np.full((2, 2, 3), 8, np.uint8), "x")
    assert anchor_key(same[0]) == anchor_key(same[1]) != anchor_key(other)
    assert anchor_key(Observation(np.zeros((2, 2, 3), np.uint8), "x", state_hash="h1")) == "h1"


def test_gigpo_bad_step_norm():
    with pytest.raises(ValueError, match="gigpo_step_norm"):
        gigpo_advantages(gigpo_round(), step_norm="std")


# ------------------------------------------------------------------------------ SL-GRPO


def test_slgrpo_group_by_hand():
    # [1, 0, 0, 0]: mean 0.25, sample std = sqrt((0.5625 + 3·0.0625) / 3) = 0.5; A = 0.75/0.5, −0.25/0.5
    assert slgrpo_group_advantages([1, 0, 0, 0], eps=0.0) == pytest.approx([1.5, -0.5, -0.5, -0.5])
    # [1, 0]: mean 0.5, std sqrt(0.5): ±0.7071068
    assert slgrpo_group_advantages([1, 0], eps=0.0) == pytest.approx([0.7071068, -0.7071068], rel=1e-6)


@pytest.mark.parametrize("rewards", [[1, 1, 1], [1], [0, 0]])
def test_slgrpo_equal_rewards_are_dropped(rewards):
    assert slgrpo_group_advantages(rewards) is None


def test_gigpo_episode_mean_over_trajectories_or_steps_by_hand():
    # Group of two: r = 1 in 1 step, r = 0 in 3 steps.
    # "trajectory" (GiGPO paper, Eq. 3): mean (1 + 0) / 2 = 0.5 -> A^E = [0.5, -0.5].
    # "step" (verl-agent): mean (1·1 + 0·3) / 4 = 0.25 -> A^E = [0.75, -0.25].
    scores, groups, lengths = [1.0, 0.0], ["t", "t"], [1, 3]
    assert episode_advantages(scores, groups, lengths, "trajectory").tolist() == pytest.approx([0.5, -0.5])
    assert episode_advantages(scores, groups, lengths, "step").tolist() == pytest.approx([0.75, -0.25])
    # with std: step-level values [1, 0, 0, 0]: sample std = sqrt((0.75² + 3·0.25²) / 3) = 0.5
    assert episode_advantages(scores, groups, lengths, "step", eps=0.0, norm_by_std=True).tolist() == pytest.approx([1.5, -0.5])
    # through GiGPO (ω = 0 leaves A^E): every step of a trajectory carries its A^E
    round_ = [trajectory("t", 1.0, ("a",)), trajectory("t", 0.0, ("b", "c", "d"))]
    per_step = gigpo_advantages(round_, omega=0.0, episode_mean="step")
    assert per_step[0] == pytest.approx([0.75]) and per_step[1] == pytest.approx([-0.25] * 3)
    with pytest.raises(ValueError, match="gigpo_episode_mean"):
        episode_advantages(scores, groups, lengths, "episode")
