"""Evaluation: roll out a split's tasks with the current policy and count successes over ranks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steprl.comm import Comm, TorchComm
from steprl.rollout.inference import inference
from steprl.types import Task


@dataclass
class EvalResult:
    """Successes over the valid rollouts of every rank. `success_rate` is NaN when no rollout was
    valid (the environment failed every time: the policy's success is then unknown, not 0)."""

    success_rate: float
    valid: int
    successes: int
    env_errors: int


def evaluate(
    collector: Any,
    policy: Any,
    tasks: Sequence[Task],
    *,
    success_threshold: float,
    greedy: bool = True,
    repeats: int = 1,
    max_tasks: int | None = None,
    comm: Comm | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> EvalResult:
    """`repeats` rollouts of each of the first `max_tasks` tasks (all by default), each rank its
    share, greedy or sampled; counts are summed over ranks."""
    comm = comm if comm is not None else TorchComm()
    tasks = (list(tasks[:max_tasks]) if max_tasks else list(tasks)) * repeats
    with inference(policy):
        trajectories = collector.collect(tasks[comm.rank :: comm.world], policy, greedy=greedy, progress=progress)
    local = (
        sum(t.valid for t in trajectories),
        sum(t.valid and t.score >= success_threshold for t in trajectories),
        sum(not t.valid for t in trajectories),
    )
    valid, successes, errors = (sum(values) for values in zip(*comm.gather(local)))
    return EvalResult(successes / valid if valid else float("nan"), valid, successes, errors)
