"""Which tasks are rolled out each round: the epoch schedule and SR-Traj (docs/algorithm.md §2).

Each round schedules B tasks × N copies. SR-Traj replaces each copy of a task with known ŝ_i, with
probability p_rep(ŝ_i) = 1 / (1 + exp(−κ·(ŝ_i − s0))), by a task drawn uniformly from the cache
C_Q = {j : 0 < ŝ_j < s0}, so the budget B·N moves from mastered tasks to tasks of intermediate
difficulty. `UniformScheduler` (T-GRPO, GiGPO, ablations) has the same interface and never replaces.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steprl.algo.success_rate import SuccessRateRecorder


def replacement_probability(s: float, s0: float = 0.6, kappa: float = 10.0) -> float:
    """p_rep(ŝ) = 1 / (1 + exp(−κ·(ŝ − s0))): the chance that one copy of a task with rate ŝ is
    handed to a cache task. 0.5 at ŝ = s0; κ (default 10 [reconstructed]) sets the steepness."""
    z = kappa * (s - s0)
    if z >= 0:  # the two branches avoid overflow of exp for large |z|
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass
class Allocation:
    """The copies to roll out this round.

    `copies[c]` is the task id of copy c (length B·N, scheduled order, task-major); `replaced` lists
    (scheduled task, task that got the copy) for every SR-Traj replacement, including a draw that
    lands on the scheduled task itself (it is in the cache too); `cache_size` is |C_Q| at the start
    of the round (logged as `tasks/cache_size`; 0 is the paper's failure signature).
    """

    copies: list[str]
    replaced: list[tuple[str, str]] = field(default_factory=list)
    cache_size: int = 0

    @property
    def num_replaced(self) -> int:
        return len(self.replaced)

    def copies_per_task(self) -> dict[str, int]:
        """{task_id: number of copies}, in order of first appearance."""
        return dict(Counter(self.copies))


class TaskScheduler(ABC):
    """The epoch-ordered task schedule shared by both samplers.

    The task list is walked in passes; each pass is a fresh permutation seeded by (seed, pass), so
    `schedule(epoch)` is a pure function of the seed and the epoch: a resumed run schedules exactly
    what the uninterrupted run would have. A batch that crosses the end of a pass continues in the
    next pass's order (with B > number of tasks a task can appear twice in one round). The
    generator used for replacement draws is owned, seeded and checkpointed.
    """

    def __init__(self, task_ids: Sequence[str], tasks_per_epoch: int, seed: int) -> None:
        task_ids = [str(t) for t in task_ids]
        if not task_ids:
            raise ValueError("The scheduler got no tasks: the environment's training split is empty.")
        duplicates = sorted(t for t, c in Counter(task_ids).items() if c > 1)
        if duplicates:
            raise ValueError(f"Task ids must be unique; repeated: {', '.join(duplicates[:5])}.")
        if tasks_per_epoch < 1:
            raise ValueError(f"data.tasks_per_epoch (B) = {tasks_per_epoch}; it must be at least 1.")
        self.task_ids = task_ids
        self.tasks_per_epoch = int(tasks_per_epoch)
        self.seed = int(seed)
        self.generator = np.random.default_rng([self.seed, 1])  # replacement draws
        self.next_epoch = 0  # informational: the epoch after the last one scheduled

    def _pass_order(self, pass_index: int) -> list[str]:
        permutation = np.random.default_rng([self.seed, 0, pass_index]).permutation(len(self.task_ids))
        return [self.task_ids[i] for i in permutation]

    def schedule(self, epoch: int) -> list[str]:
        """The B task ids of round `epoch` (0-based): positions epoch·B .. epoch·B + B − 1 of the
        concatenated per-pass shuffled orders."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}.")
        num_tasks, start = len(self.task_ids), epoch * self.tasks_per_epoch
        chosen: list[str] = []
        orders: dict[int, list[str]] = {}
        for position in range(start, start + self.tasks_per_epoch):
            pass_index, offset = divmod(position, num_tasks)
            if pass_index not in orders:
                orders[pass_index] = self._pass_order(pass_index)
            chosen.append(orders[pass_index][offset])
        self.next_epoch = max(self.next_epoch, epoch + 1)
        return chosen

    @abstractmethod
    def reallocate(
        self,
        task_ids: Sequence[str],
        rollouts_per_task: int,
        recorder: SuccessRateRecorder,
        generator: np.random.Generator | None = None,
    ) -> Allocation:
        """B scheduled task ids × N copies → the B·N copies to roll out (each sampler's own rule)."""

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Plain python types (torch.load(weights_only=True) safe): the seed and task list that
        define the schedule, the epoch position, and the replacement generator's state."""
        return {
            "seed": self.seed,
            "task_ids": list(self.task_ids),
            "tasks_per_epoch": self.tasks_per_epoch,
            "next_epoch": self.next_epoch,
            "generator": self.generator.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["task_ids"]) != self.task_ids or int(state["seed"]) != self.seed:
            raise ValueError(
                "The checkpoint's task schedule was built from another task list or seed; resume with "
                "the same env tasks and seed, or start a fresh run."
            )
        if int(state["tasks_per_epoch"]) != self.tasks_per_epoch:
            raise ValueError(
                f"The checkpoint scheduled B={state['tasks_per_epoch']} tasks per epoch but "
                f"data.tasks_per_epoch is {self.tasks_per_epoch}; resume with the same value."
            )
        self.next_epoch = int(state["next_epoch"])
        self.generator.bit_generator.state = state["generator"]


def replace_copies(
    task_ids: Sequence[str],
    rollouts_per_task: int,
    cache: Sequence[str],
    p_rep: Callable[[str], float],
    draw: Callable[[], str],
    rng: np.random.Generator,
) -> Allocation:
    """The N copies of each scheduled task, each handed with probability p_rep(task) to a cache task
    given by `draw()` (SR-Traj draws uniformly, `sampling: beta` by weight). With an empty cache
    nothing is replaced. One `rng.random()` per copy of a task with p_rep > 0, then the draw."""
    copies: list[str] = []
    replaced: list[tuple[str, str]] = []
    for task_id in task_ids:
        p = p_rep(task_id) if cache else 0.0
        for _ in range(rollouts_per_task):
            if p > 0.0 and rng.random() < p:
                target = draw()
                replaced.append((task_id, target))
                copies.append(target)
            else:
                copies.append(task_id)
    return Allocation(copies=copies, replaced=replaced, cache_size=len(cache))


def _check_rollouts(rollouts_per_task: int) -> None:
    if rollouts_per_task < 1:
        raise ValueError(f"data.rollouts_per_task (N) = {rollouts_per_task}; it must be at least 1.")


class SRTrajScheduler(TaskScheduler):
    """SR-Traj: the schedule above, with copies of mastered tasks handed to the cache C_Q."""

    def __init__(
        self, task_ids: Sequence[str], tasks_per_epoch: int, seed: int, s0: float = 0.6, kappa: float = 10.0
    ) -> None:
        super().__init__(task_ids, tasks_per_epoch, seed)
        self.s0, self.kappa = float(s0), float(kappa)

    def reallocate(
        self,
        task_ids: Sequence[str],
        rollouts_per_task: int,
        recorder: SuccessRateRecorder,
        generator: np.random.Generator | None = None,
    ) -> Allocation:
        """B task ids × N copies → the B·N copies to roll out.

        Each copy of a task with known ŝ_i is replaced with probability p_rep(ŝ_i) by a task drawn
        uniformly from C_Q (read once, before any replacement). Unseen tasks are never replaced;
        with an empty cache nothing is. `generator` defaults to the scheduler's own.
        """
        _check_rollouts(rollouts_per_task)
        rng = self.generator if generator is None else generator
        cache = recorder.cache(self.s0)

        def p_rep(task_id: str) -> float:
            rate = recorder.get(task_id)
            return replacement_probability(rate, self.s0, self.kappa) if rate is not None else 0.0

        return replace_copies(task_ids, rollouts_per_task, cache, p_rep, lambda: cache[int(rng.integers(len(cache)))], rng)


class UniformScheduler(TaskScheduler):
    """Uniform sampling (T-GRPO, GiGPO, "without SR-Traj"): every scheduled task keeps its N copies.

    `s0` is only used to report the cache size, so runs with and without SR-Traj log the same
    `tasks/cache_size` curve.
    """

    def __init__(self, task_ids: Sequence[str], tasks_per_epoch: int, seed: int, s0: float = 0.6) -> None:
        super().__init__(task_ids, tasks_per_epoch, seed)
        self.s0 = float(s0)

    def reallocate(
        self,
        task_ids: Sequence[str],
        rollouts_per_task: int,
        recorder: SuccessRateRecorder,
        generator: np.random.Generator | None = None,
    ) -> Allocation:
        """B task ids × N copies, unchanged."""
        _check_rollouts(rollouts_per_task)
        copies = [task_id for task_id in task_ids for _ in range(rollouts_per_task)]
        return Allocation(copies=copies, replaced=[], cache_size=len(recorder.cache(self.s0)))
