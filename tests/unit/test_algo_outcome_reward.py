"""Extension 2: SL-GRPO alternatives judged by the outcome of their continuation (docs/extensions.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steprl.algo.augment import augmentation_samples
from steprl.algo.outcome_reward import (
    continuation_plan,
    continuation_reward,
    outcome_augmentation_samples,
    outcome_rewards,
    outcome_value,
)
from steprl.types import Action, Dialogue, DialogueTurn, Generation, Observation, Task, TrainingSample, Trajectory, Turn


def step_sample() -> TrainingSample:
    history = DialogueTurn(None, response="Action: click(start_box='(5,5)')")
    current = DialogueTurn(np.zeros((2, 2, 3), np.uint8), response="Action: click(start_box='(100,100)')", response_ids=(1, 2), trainable=True)
    return TrainingSample(Dialogue("press the button", [history, current]), advantage=0.9, task_id="a", group="a")


def trajectory(length: int, max_steps: int | None = None) -> Trajectory:
    task = Task(id="a", family="f", instruction="do it", max_steps=max_steps)
    turns = [Turn(Observation(np.zeros((2, 2, 3), np.uint8), "do it"), response=f"r{t}") for t in range(length)]
    return Trajectory(task=task, turns=turns, score=1.0, success=True)


def test_outcome_value_and_continuation_reward():
    assert outcome_value(0.7, 1.0) == 0.0 and outcome_value(1.0, 1.0) == 1.0 and outcome_value(0.7, None) == 0.7
    assert continuation_reward(1.0) == 1.0
    assert continuation_reward([1.0, 0.0, 1.0, None]) == pytest.approx(2 / 3)  # the errored one is left out
    assert continuation_reward([None, None]) is None and continuation_reward(None) is None
    assert continuation_reward([0.4, 0.8], success_threshold=None) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="finite"):
        continuation_reward([math.nan])


def test_outcome_group_by_hand():
    # original succeeded: r_0 = 1. Alternatives: [1, 0] → 0.5; errored → left out; 0 → 0; [None, 1] → 1.
    # group [1, 0.5, 0, 1]: mean 0.625; deviations 0.375, −0.125, −0.625, 0.375;
    # sample var = (0.140625 + 0.015625 + 0.390625 + 0.140625) / 3 = 0.2291667, std = 0.4787136 (ε = 0)
    # A = 0.375 / 0.4787136 = 0.7833495, −0.125 / 0.4787136 = −0.2611165, −0.625 / 0.4787136 = −1.3055824
    group = outcome_rewards(1.0, [[1.0, 0.0], None, 0.0, [None, 1.0]], success_threshold=1.0, eps=0.0)
    assert group.original_reward == 1.0
    assert group.rewards == [0.5, None, 0.0, 1.0] and group.kept == [0, 2, 3]
    assert group.advantages == pytest.approx([0.7833495, -0.2611165, -1.3055824, 0.7833495], rel=1e-6)
    assert not group.dropped


def test_raw_scores_by_hand():
    # threshold None: r_0 = 0.8; [0.5, 0.8] → 0.65; 0.3. Group [0.8, 0.65, 0.3], mean 0.5833333;
    # deviations 0.2166667, 0.0666667, −0.2833333; var = (0.0469444 + 0.0044444 + 0.0802778) / 2 = 0.0658333,
    # std = 0.2565801; A = 0.8444407, 0.2598279, −1.1042687
    group = outcome_rewards(0.8, [[0.5, 0.8], 0.3], success_threshold=None, eps=0.0)
    assert group.advantages == pytest.approx([0.8444407, 0.2598279, -1.1042687], rel=1e-6)


def test_a_different_action_that_also_works_is_not_pushed_down():
    # Equivalence (augment.py) gives both different-but-working alternatives 0 and pushes them down;
    # judged by outcome, all three succeed: equal rewards, the group is dropped.
    original = step_sample()
    alternatives = [("Action: press(key='enter')", Action("press", text="enter")), ("Action: hotkey(key='space')", Action("hotkey", text="space"))]
    equivalence = augmentation_samples(original, Action("click", (100, 100)), alternatives, eps=0.0)
    assert [s.advantage < 0 for s in equivalence] == [False, True, True]
    group = outcome_rewards(1.0, [1.0, [1.0, 1.0]])
    assert group.dropped and outcome_augmentation_samples(original, [text for text, _ in alternatives], group) == []


def test_rescored_original_by_hand():
    # the original's own continuations [1, 0, None] → r_0 = 0.5; alternatives 1.0 and [0, 0] → 1, 0.
    # group [0.5, 1, 0]: mean 0.5, sample std = sqrt((0 + 0.25 + 0.25)/2) = 0.5; A = 0, 1, −1 (ε = 0)
    group = outcome_rewards([1.0, 0.0, None], [1.0, [0.0, 0.0]], eps=0.0)
    assert group.original_reward == 0.5 and group.advantages == pytest.approx([0.0, 1.0, -1.0])
    with pytest.raises(ValueError, match="original action has no outcome"):
        outcome_rewards([None], [1.0])


def test_edge_cases_no_alternative_left_all_failures_all_successes():
    assert outcome_rewards(1.0, []).dropped  # no alternative: nothing to compare
    assert outcome_rewards(1.0, [None, [None]]).dropped  # every continuation errored
    assert outcome_rewards(1.0, [1.0, 1.0]).dropped  # all succeed
    assert outcome_rewards(0.0, [0.0, [0.0, 0.0]]).dropped  # all fail (original included)
    # all alternatives fail, original succeeded: [1, 0, 0] → mean 1/3, std sqrt(1/3):
    # A = (2/3) / 0.5773503 = 1.1547005, (−1/3) / 0.5773503 = −0.5773503
    assert outcome_rewards(1.0, [0.0, 0.0], eps=0.0).advantages == pytest.approx([1.1547005, -0.5773503, -0.5773503], rel=1e-6)


def test_matches_augment_env_rewards_when_the_original_succeeded():
    # With r_0 = 1 the group is augment.py's aug_reward=env group over the kept alternatives.
    original = step_sample()
    texts = ["Action: click(start_box='(1,1)')", Generation("Action: wait()", (4, 5), (-0.1, -0.2)), "x"]
    group = outcome_rewards(1.0, [[1.0, 0.0], 0.0, None], eps=1e-6)
    ours = outcome_augmentation_samples(original, texts, group, weight=0.5)
    reference = augmentation_samples(original, None, [(texts[0], None), (texts[1], None)], "env", rewards=[0.5, 0.0], weight=0.5)
    assert [s.advantage for s in ours] == pytest.approx([s.advantage for s in reference])
    assert [s.dialogue.turns[-1].response for s in ours] == [s.dialogue.turns[-1].response for s in reference]
    assert [s.dialogue.turns[-1].response_ids for s in ours] == [(1, 2), (), (4, 5)]
    assert [s.dialogue.turns[-1].response_logprobs for s in ours] == [(), (), (-0.1, -0.2)]
    assert all(s.source == "augment" and s.weight == 0.5 and s.group == "a/aug" and s.old_logprobs is None for s in ours)
    assert all(s.dialogue.turns[0] is original.dialogue.turns[0] for s in ours)
    assert original.dialogue.turns[-1].response == "Action: click(start_box='(100,100)')"  # untouched


def test_samples_need_a_step_sample_and_matching_alternatives():
    group = outcome_rewards(1.0, [0.0])
    with pytest.raises(ValueError, match="alternatives"):
        outcome_augmentation_samples(step_sample(), ["a", "b"], group)
    whole = TrainingSample(Dialogue("x", [DialogueTurn(None, "a", trainable=True), DialogueTurn(None, "b", trainable=True)]), 1.0, "a")
    with pytest.raises(ValueError, match="one trainable turn"):
        outcome_augmentation_samples(whole, ["a"], group)


def test_continuation_plan_costs_by_hand():
    # 10 turns, branch at t = 3, task budget 15: 12 steps left; horizon 5 → 5 steps per continuation.
    # K = 3 alternatives × M = 2 continuations = 6 rollouts; env steps ≤ 3 (replay) + 6·5 = 33;
    # policy steps ≤ 6·(5 − 1) = 24.
    plan = continuation_plan(trajectory(10, max_steps=15), 3, alternatives=3, horizon=5, continuations=2)
    assert plan.replay == ("r0", "r1", "r2") and plan.steps == 5 and plan.truncated
    assert (plan.rollouts, plan.max_env_steps, plan.max_policy_steps) == (6, 33, 24)
    # to the end of the episode: the environment's budget 15 (task has none) − 3 = 12 steps, not truncated
    full = continuation_plan(trajectory(10), 3, alternatives=3, max_steps=15)
    assert full.steps == 12 and not full.truncated and full.max_env_steps == 3 + 3 * 12
    # a horizon beyond the budget is capped by it
    assert continuation_plan(trajectory(10, max_steps=15), 3, 3, horizon=50).steps == 12
    # rescoring the original adds one more action to continue: (3 + 1)·2 = 8 rollouts, 3 + 8·5 = 43 env steps
    both = continuation_plan(trajectory(10, max_steps=15), 3, alternatives=3, horizon=5, continuations=2, rescore_original=True)
    assert (both.rollouts, both.max_env_steps, both.max_policy_steps) == (8, 43, 32)


def test_continuation_plan_refuses_what_it_cannot_plan():
    with pytest.raises(ValueError, match="no max_steps"):
        continuation_plan(trajectory(4), 1, 3)
    with pytest.raises(ValueError, match="outside"):
        continuation_plan(trajectory(4, 10), 4, 3)
    with pytest.raises(ValueError, match="aug_outcome_horizon"):
        continuation_plan(trajectory(4, 10), 1, 3, horizon=0)
    with pytest.raises(ValueError, match="aug_outcome_continuations"):
        continuation_plan(trajectory(4, 10), 1, 3, continuations=0)
