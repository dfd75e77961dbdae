"""Trajectories → training samples, and when two actions count as the same (docs/algorithm.md §3, §4, §6).

A step sample is one turn t of a trajectory in its step context (task instruction, the last k
responses as text, the last m screenshots, the current screenshot) with y_t as the trainable
target; STEP and GiGPO train on these. A trajectory sample is the whole multi-turn trajectory with
every response trainable (T-GRPO). Contexts come from `algo.context`, the same functions the
rollout uses, so training sees what the policy saw wherever the algorithm allows it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from steprl.algo.context import step_dialogue, trajectory_dialogue
from steprl.types import Action, TrainingSample, Trajectory


@dataclass(frozen=True)
class SampleOrigin:
    """Where a training sample came from: its trajectory and, for a step sample, the turn index t
    (None for a whole-trajectory sample). SL-GRPO uses it to find a_t (`turns[t].action`) and, with
    `algo.aug_reward=env`, the state to restore."""

    trajectory: Trajectory
    turn_index: int | None


def step_samples(
    trajectory: Trajectory,
    advantages: float | Sequence[float],
    *,
    history_responses: int = 3,
    history_screenshots: int = 0,
    source: str = "step",
    group: str | None = None,
    weight: float = 1.0,
) -> list[TrainingSample]:
    """One sample per turn t: context = instruction + last k = `history_responses` responses +
    last m = `history_screenshots` screenshots + o_t; target y_t (its rollout token ids reused).

    `advantages` is one number for every step (SR-Adv, broadcast GRPO) or one per step (GiGPO).
    `group` defaults to the task id.
    """
    per_step = [float(advantages)] * trajectory.length if isinstance(advantages, numbers.Real) else list(advantages)
    if len(per_step) != trajectory.length:
        raise ValueError(f"step_samples: {len(per_step)} advantages for a trajectory of {trajectory.length} steps.")
    task = trajectory.task
    samples = []
    for t, (turn, advantage) in enumerate(zip(trajectory.turns, per_step)):
        dialogue = step_dialogue(
            task.instruction,
            trajectory.turns[:t],
            turn.observation.screenshot,
            num_responses=history_responses,
            num_screenshots=history_screenshots,
            response=turn.response,
            response_ids=turn.response_ids,
            response_logprobs=turn.response_logprobs,
            trainable=True,
            a11y=turn.observation.a11y,
        )
        samples.append(
            TrainingSample(
                dialogue=dialogue,
                advantage=float(advantage),
                task_id=task.id,
                source=source,
                weight=weight,
                group=task.id if group is None else group,
            )
        )
    return samples


def trajectory_sample(
    trajectory: Trajectory, advantage: float, *, max_images: int = 5, group: str | None = None
) -> TrainingSample:
    """The whole trajectory as one sequence, every response trainable, screenshots of the last
    `max_images` turns (T-GRPO); `group` defaults to the task id."""
    return TrainingSample(
        dialogue=trajectory_dialogue(trajectory, max_images=max_images),
        advantage=float(advantage),
        task_id=trajectory.task.id,
        source="trajectory",
        group=trajectory.task.id if group is None else group,
    )


# --------------------------------------------------------------------------------------------
# Action equivalence (SL-GRPO rewards, aug.reward=equivalence)
# --------------------------------------------------------------------------------------------

#: Action types whose text is a set of keys: "ctrl shift t" equals "shift ctrl t".
KEY_ACTIONS = ("hotkey", "press", "keydown", "keyup")


def normalise_text(text: str | None) -> str:
    """Strip, case-fold and collapse runs of whitespace; None counts as ""."""
    return " ".join((text or "").split()).casefold()


def _points_close(p: tuple[int, int] | None, q: tuple[int, int] | None, radius_px: float) -> bool:
    if p is None or q is None:
        return p is None and q is None
    return math.dist(p, q) <= radius_px


def _texts_equal(action_type: str, a: str | None, b: str | None) -> bool:
    if action_type in KEY_ACTIONS:
        return set(normalise_text(a).split()) == set(normalise_text(b).split())
    if action_type == "type":
        # UI-TARS submits a typed text that ends in "\n": that is part of the action, not spacing.
        submits_a, submits_b = (a or "").endswith("\n"), (b or "").endswith("\n")
        return submits_a == submits_b and normalise_text(a) == normalise_text(b)
    return normalise_text(a) == normalise_text(b)


def actions_equivalent(a: Action | None, b: Action | None, radius_px: float = 20.0) -> bool:
    """Whether two parsed actions do the same thing: same type, points (and drag end points) within
    `radius_px` pixels (Euclidean, absolute screen pixels; default 20 [reconstructed]), same scroll
    direction, same text after `normalise_text`, keys of hotkey/press/keydown/keyup compared as a
    set, and for `type` the same choice of submitting (trailing newline). None (unparseable) is
    never equivalent to anything.
    """
    if a is None or b is None or a.type != b.type:
        return False
    return (
        _points_close(a.point, b.point, radius_px)
        and _points_close(a.end_point, b.end_point, radius_px)
        and normalise_text(a.direction) == normalise_text(b.direction)
        and _texts_equal(a.type, a.text, b.text)
    )
