"""Extension 2: SL-GRPO alternatives judged by outcome (docs/extensions.md, section 2).

SL-GRPO (augment.py) rewards an alternative a'_j at step t with 1 only if it is the same action as
the original a_t, so a different action that also works is pushed down. Here each alternative is
executed from the restored state s_t and the episode is continued with the current policy for at
most H steps (`horizon`; default: to the end of the episode); the continuation's outcome is the
alternative's reward:

    r_0 = o(τ)                                  the original: its own trajectory's outcome, or the
                                                mean over its own continuations (`rescore_original`)
    r_j = (1/M_j) Σ_m o(c_jm)                   alternative j: mean over its M_j continuations
    o(x) = 1[score(x) ≥ threshold]              (`success_threshold`; None: o(x) = score(x))
    A_j = (r_j − mean(r_G)) / (std(r_G) + ε)    over G = {original} ∪ kept alternatives, sample std

A continuation that ended in an environment error says nothing about the policy: it is left out
of the mean, and an alternative whose continuations all errored (None) is left out of the group.
A group whose rewards are all equal is dropped, as in augment.py.

Selection bias: SL-GRPO only augments steps of successful trajectories, so o(τ) = 1 always, while an
alternative's continuation can fail through a later mistake of the policy that has nothing to do
with the alternative. Continuing the original action a_t as well, with the same policy and horizon,
scores both sides the same way, at the price of M more continuations per step
(`continuation_plan(..., rescore_original=True)`; pass its outcomes as `original`).

The continuation itself needs the env pool and the policy (the round's job); `continuation_plan`
says what to run and what it costs: replay t steps once, snapshot, then per alternative and
continuation restore and take up to H steps (the alternative plus H − 1 policy steps).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steprl.algo.advantages import slgrpo_group_advantages
from steprl.types import Generation, TrainingSample, Trajectory

#: One alternative's outcomes: a score, several continuation scores (None for one that errored),
#: or None when the alternative could not be continued at all.
Outcomes = float | Sequence[float | None] | None


def outcome_value(score: float, success_threshold: float | None) -> float:
    """o(x): 1.0 / 0.0 by success (score ≥ threshold), or the raw score when the threshold is None."""
    if not math.isfinite(score):
        raise ValueError(f"A continuation outcome must be a finite score, got {score!r}; check the environment's evaluator.")
    if success_threshold is None:
        return float(score)
    return float(score >= success_threshold)


def continuation_reward(outcomes: Outcomes, success_threshold: float | None = 1.0) -> float | None:
    """r_j = mean of o over the continuations that did not error; None when none is left."""
    if outcomes is None:
        return None
    if isinstance(outcomes, (int, float)) and not isinstance(outcomes, bool):
        return outcome_value(float(outcomes), success_threshold)
    values = [outcome_value(float(score), success_threshold) for score in outcomes if score is not None]
    return sum(values) / len(values) if values else None


@dataclass
class OutcomeGroup:
    """One step's outcome-judged group.

    `rewards[j]` is alternative j's reward (None: left out, every continuation errored); `kept`
    lists the alternatives in the group, in order; `advantages` are over [original] + kept
    alternatives (original first), or None when the group was dropped (equal rewards, or no
    alternative left).
    """

    original_reward: float
    rewards: list[float | None]
    kept: list[int]
    advantages: np.ndarray | None

    @property
    def dropped(self) -> bool:
        return self.advantages is None


def outcome_rewards(
    original: Outcomes,
    alternative_outcomes: Sequence[Outcomes],
    success_threshold: float | None = 1.0,
    eps: float = 1e-6,
) -> OutcomeGroup:
    """Rewards and group advantages of one step's alternatives from their continuation outcomes
    (formulas in the module docstring). `original` is the score of the trajectory the original
    step came from, or the scores of the original action's own continuations."""
    original_reward = continuation_reward(original, success_threshold)
    if original_reward is None:
        raise ValueError("The original action has no outcome (every continuation of it errored): skip this step's group.")
    rewards = [continuation_reward(outcomes, success_threshold) for outcomes in alternative_outcomes]
    kept = [j for j, reward in enumerate(rewards) if reward is not None]
    group = [original_reward] + [rewards[j] for j in kept]
    advantages = slgrpo_group_advantages(group, eps=eps) if kept else None
    return OutcomeGroup(original_reward=original_reward, rewards=rewards, kept=kept, advantages=advantages)


def outcome_augmentation_samples(
    original: TrainingSample,
    alternatives: Sequence[Generation | str],
    group: OutcomeGroup,
    weight: float = 1.0,
) -> list[TrainingSample]:
    """The training samples of an outcome-judged group: the original first, then each kept
    alternative, with its advantage, `source="augment"`, `weight` (algo.aug_weight) and group
    "<group or task>/aug", as augment.py's samples; [] for a dropped group."""
    turns = original.dialogue.turns
    if not turns or not turns[-1].trainable or sum(t.trainable for t in turns) != 1:
        raise ValueError("outcome_augmentation_samples needs a step sample: one trainable turn, the last one.")
    if len(alternatives) != len(group.rewards):
        raise ValueError(f"Got {len(alternatives)} alternatives for a group scored over {len(group.rewards)}.")
    if group.advantages is None:
        return []
    members = [(turns[-1].response, turns[-1].response_ids, turns[-1].response_logprobs)]
    for j in group.kept:
        generated = alternatives[j]
        if isinstance(generated, Generation):
            members.append((generated.text, tuple(generated.token_ids), tuple(generated.logprobs)))
        else:
            members.append((str(generated), (), ()))
    label = f"{original.group or original.task_id}/aug"
    samples = []
    for (text, token_ids, logprobs), advantage in zip(members, group.advantages):
        last = dataclasses.replace(turns[-1], response=text, response_ids=token_ids, response_logprobs=logprobs)
        dialogue = dataclasses.replace(original.dialogue, turns=[*turns[:-1], last])
        samples.append(
            dataclasses.replace(
                original,
                dialogue=dialogue,
                advantage=float(advantage),
                source="augment",
                weight=weight,
                group=label,
                old_logprobs=None,
            )
        )
    return samples


# --------------------------------------------------------------------------------------------
# What to continue, and what it costs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinuationPlan:
    """How to judge the alternatives of step t of a trajectory by outcome.

    Reset to `task_id`, replay `replay` (the responses of turns 0 .. t − 1), snapshot; then for
    each of `alternatives` alternatives (plus the original a_t when `rescore_original`) and each of
    `continuations` continuations: restore, step the action, and let the current policy act for up to `steps − 1` more steps (fewer if the
    episode ends), then evaluate. `truncated` is True when the horizon stops the continuation
    before the task's step budget would, or may (no budget known): its outcome is then judged on
    an unfinished episode, which can only under-rate an alternative that needed more steps.
    """

    task_id: str
    turn_index: int
    replay: tuple[str, ...]
    alternatives: int
    continuations: int
    steps: int
    truncated: bool
    rescore_original: bool = False

    @property
    def rollouts(self) -> int:
        """Continuations to run: (alternatives, + 1 with `rescore_original`) × continuations."""
        return (self.alternatives + int(self.rescore_original)) * self.continuations

    @property
    def max_env_steps(self) -> int:
        """Worst-case env steps: the replay once, then `steps` per continuation."""
        return len(self.replay) + self.rollouts * self.steps

    @property
    def max_policy_steps(self) -> int:
        """Worst-case policy generations: every continuation step after the alternative itself."""
        return self.rollouts * max(self.steps - 1, 0)


def continuation_plan(
    trajectory: Trajectory,
    turn_index: int,
    alternatives: int,
    horizon: int | None = None,
    continuations: int = 1,
    max_steps: int | None = None,
    rescore_original: bool = False,
) -> ContinuationPlan:
    """The plan for the alternatives of step `turn_index`.

    The budget left at step t is T_max − t, T_max being the task's `max_steps` or else `max_steps`
    (the environment's default); a continuation takes steps = min(H, T_max − t) env steps, the
    alternative included; with `horizon=None` it runs to the end of the budget.
    """
    if not 0 <= turn_index < trajectory.length:
        raise ValueError(f"turn_index={turn_index} is outside the trajectory's {trajectory.length} turns.")
    if alternatives < 0 or continuations < 1:
        raise ValueError(f"Need alternatives >= 0 (got {alternatives}) and algo.aug_outcome_continuations >= 1 (got {continuations}).")
    if horizon is not None and horizon < 1:
        raise ValueError(f"algo.aug_outcome_horizon={horizon} must be >= 1 (or null: to the end of the episode).")
    budget = trajectory.task.max_steps if trajectory.task.max_steps is not None else max_steps
    if budget is None and horizon is None:
        raise ValueError(
            f"Task '{trajectory.task.id}' has no max_steps: give the environment's step budget, or set algo.aug_outcome_horizon."
        )
    left = max(budget - turn_index, 1) if budget is not None else None
    steps = min(x for x in (horizon, left) if x is not None)
    return ContinuationPlan(
        task_id=trajectory.task.id,
        turn_index=turn_index,
        replay=tuple(turn.response for turn in trajectory.turns[:turn_index]),
        alternatives=alternatives,
        continuations=continuations,
        steps=steps,
        truncated=left is None or steps < left,
        rescore_original=rescore_original,
    )
