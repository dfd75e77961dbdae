"""SL-GRPO: step-level groups of alternative actions for low-success tasks (docs/algorithm.md §4).

For a step sample (context, y_t) of a task with ŝ_i ≤ s_low, the caller samples K = N/2 − 1
alternative responses from the current policy on the same context and parses them; this module
scores the group G = {y_t} ∪ alternatives (r(y_t) = 1; an alternative gets 1 if its action is
equivalent to a_t, or the env's verdict with `aug.reward=env`) and turns it into samples with
A_j = (r_j − mean(r_G)) / (std(r_G) + ε). Sampling needs the policy, so the round (steprl/round.py)
runs the loop: `select_augmentation_steps` picks the steps; for each, it samples
`num_alternatives(N)` responses on the step's dialogue, parses them, and hands them to
`augmentation_samples`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from steprl.algo.advantages import slgrpo_group_advantages
from steprl.algo.samples import SampleOrigin, actions_equivalent
from steprl.algo.success_rate import SuccessRateRecorder
from steprl.types import Action, Generation, TrainingSample

REWARD_FUNCTIONS = ("equivalence", "env")


def num_alternatives(rollouts_per_task: int) -> int:
    """K = N/2 − 1 alternatives per step (integer division; never below 0): the group {y_t} ∪
    alternatives then has N/2 members."""
    return max(rollouts_per_task // 2 - 1, 0)


def low_success_rule(recorder: SuccessRateRecorder, s_low: float) -> Callable[[str], bool]:
    """The paper's rule for "this task is hard": ŝ_i ≤ s_low. A task the record has never seen is
    not hard (nothing says it is)."""

    def is_low(task_id: str) -> bool:
        rate = recorder.get(task_id)
        return rate is not None and rate <= s_low

    return is_low


def select_augmentation_steps(
    pairs: Sequence[tuple[TrainingSample, SampleOrigin]],
    is_low_success: Callable[[str], bool],
    success_threshold: float,
) -> list[tuple[TrainingSample, SampleOrigin]]:
    """The step samples SL-GRPO augments, with their origins.

    y_t is the group's reference answer (r = 1), so it must come from a trajectory that SUCCEEDED
    (score ≥ success_threshold), never from a failed one that happens to have a positive group
    advantage (partial-credit scores), and its action must have parsed and been valid (an
    unparseable y_t is never reinforced). Only `source == "step"` samples of tasks for which
    `is_low_success(task_id)` holds qualify (`low_success_rule`: ŝ_i ≤ s_low, the paper; or
    `adaptive_thresholds.beta_low_success_rule` with `algo.aug_select=beta`).
    """
    selected = []
    for sample, origin in pairs:
        if sample.source != "step" or origin.turn_index is None:
            continue
        if origin.trajectory.score < success_threshold or not origin.trajectory.valid:
            continue
        turn = origin.trajectory.turns[origin.turn_index]
        if turn.action is None or not turn.action_valid:
            continue
        if is_low_success(sample.task_id):
            selected.append((sample, origin))
    return selected


def _with_response(
    original: TrainingSample, text: str, token_ids: tuple[int, ...], logprobs: tuple[float, ...]
) -> TrainingSample:
    """The original's step context with another trainable response."""
    turns = list(original.dialogue.turns)
    turns[-1] = dataclasses.replace(turns[-1], response=text, response_ids=token_ids, response_logprobs=logprobs)
    dialogue = dataclasses.replace(original.dialogue, turns=turns)
    return dataclasses.replace(original, dialogue=dialogue, old_logprobs=None)


def augmentation_samples(
    original: TrainingSample,
    original_action: Action | None,
    alternatives: Sequence[tuple[Generation | str, Action | None]],
    reward_fn: str = "equivalence",
    *,
    rewards: Sequence[float] | None = None,
    radius_px: float = 20.0,
    eps: float = 1e-6,
    weight: float = 1.0,
) -> list[TrainingSample]:
    """The SL-GRPO group of one step: the original y_t (r = 1) first, then one sample per
    alternative, each with its group advantage, `source="augment"` and `weight` (aug.weight).

    `alternatives` are (generated text or Generation, its parsed Action or None if unparseable).
    `reward_fn="equivalence"`: r_j = 1 if `actions_equivalent(action_j, original_action,
    radius_px)` else 0 (an unparseable alternative gets 0). `reward_fn="env"`: the caller passes
    `rewards`, one per alternative (e.g. 1 if executing it from the saved state reaches the same
    next state as a_t). A group whose rewards are all equal is dropped: [].
    """
    turns = original.dialogue.turns
    if not turns or not turns[-1].trainable or sum(t.trainable for t in turns) != 1:
        raise ValueError("augmentation_samples needs a step sample: one trainable turn, the last one.")
    if reward_fn not in REWARD_FUNCTIONS:
        raise ValueError(f"algo.aug_reward={reward_fn!r}: use one of {', '.join(REWARD_FUNCTIONS)}.")
    if reward_fn == "env":
        if rewards is None or len(rewards) != len(alternatives):
            raise ValueError(
                "algo.aug_reward='env' needs `rewards`, one per alternative "
                f"(got {None if rewards is None else len(rewards)} for {len(alternatives)} alternatives)."
            )
        alternative_rewards = [float(r) for r in rewards]
        if not all(math.isfinite(r) for r in alternative_rewards):
            raise ValueError("algo.aug_reward='env' got a NaN or infinite reward.")
    else:
        if rewards is not None:
            raise ValueError("`rewards` are only used with algo.aug_reward='env'; equivalence rewards are computed here.")
        alternative_rewards = [float(actions_equivalent(action, original_action, radius_px)) for _, action in alternatives]

    advantages = slgrpo_group_advantages([1.0] + alternative_rewards, eps=eps)
    if advantages is None:
        return []
    group = f"{original.group or original.task_id}/aug"
    members = [(turns[-1].response, turns[-1].response_ids, turns[-1].response_logprobs)]
    for generated, _ in alternatives:
        if isinstance(generated, Generation):
            members.append((generated.text, tuple(generated.token_ids), tuple(generated.logprobs)))
        else:
            members.append((str(generated), (), ()))
    return [
        dataclasses.replace(
            _with_response(original, text, token_ids, logprobs),
            advantage=float(advantage),
            source="augment",
            weight=weight,
            group=group,
        )
        for (text, token_ids, logprobs), advantage in zip(members, advantages)
    ]
