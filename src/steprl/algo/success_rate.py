"""The success-rate record ŝ_i (docs/algorithm.md §1): a smoothed per-task success rate.

Once per round, every task i that got n_i > 0 valid rollouts with k_i successes is updated:
ŝ_i ← (1 − α)·ŝ_i + α·k_i/n_i, and the first observation sets ŝ_i = k_i/n_i. Rollouts that ended in
an environment error are not observations. SR-Traj (`sampling.py`), SR-Adv (`advantages.py`) and
SL-GRPO (`augment.py`) all read this record; it is saved in the checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from steprl.types import Trajectory

#: A round's result for one task: (k_i successes, n_i valid rollouts).
Counts = tuple[int, int]


def is_success(trajectory: Trajectory, success_threshold: float | None = None) -> bool:
    """success(τ) = r(τ) ≥ success_threshold; with no threshold, the collector's `success` flag."""
    if success_threshold is None:
        return bool(trajectory.success)
    return trajectory.score >= success_threshold


def counts_from_trajectories(
    trajectories: Iterable[Trajectory], success_threshold: float | None = None
) -> dict[str, Counts]:
    """(k_i, n_i) per task from one round's trajectories.

    Trajectories with `env_error` set are skipped: a crashed VM says nothing about the policy, so
    it is neither a success nor a failure (docs/algorithm.md §1). A task whose rollouts all crashed gets
    no entry, and the recorder leaves it untouched.
    """
    counts: dict[str, list[int]] = {}
    for trajectory in trajectories:
        if not trajectory.valid:
            continue
        k_n = counts.setdefault(trajectory.task.id, [0, 0])
        k_n[0] += int(is_success(trajectory, success_threshold))
        k_n[1] += 1
    return {task_id: (k, n) for task_id, (k, n) in counts.items()}


def _check_rate(task_id: str, rate: Any, where: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"{where}: the success rate of task '{task_id}' is {rate!r}; it must be a number in [0, 1].")
    return float(rate)


def _check_counts(task_id: str, counts: Any) -> Counts:
    try:
        k, n = (int(c) for c in counts)
    except (TypeError, ValueError):
        raise ValueError(f"Task '{task_id}': expected (successes k, valid rollouts n), got {counts!r}.") from None
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"Task '{task_id}': successes k={k} and rollouts n={n} need 0 <= k <= n.")
    return k, n


class SuccessRateRecorder:
    """ŝ_i per task id, smoothed with α (default 0.5 [reconstructed]).

    `prior` maps task ids to starting rates (e.g. the base model's pre-measured success rates, as in
    ARPO); a task with a prior is "known" and its first observation is smoothed into the prior.
    """

    def __init__(self, alpha: float = 0.5, prior: Mapping[str, float] | None = None) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Success-rate smoothing alpha={alpha} must be in (0, 1] (algo.alpha; 1 keeps only the last round).")
        self.alpha = float(alpha)
        self._rates: dict[str, float] = {
            str(task_id): _check_rate(task_id, rate, "prior") for task_id, rate in (prior or {}).items()
        }

    @classmethod
    def from_file(cls, path: str | Path, alpha: float = 0.5) -> SuccessRateRecorder:
        """A recorder whose prior is read from a JSON file {task_id: rate in [0, 1]}."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Success-rate prior file '{path}' does not exist; give a JSON file {{task_id: rate}}.")
        try:
            prior = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"Success-rate prior file '{path}' is not valid JSON ({error}).") from None
        if not isinstance(prior, dict):
            raise ValueError(f"Success-rate prior file '{path}' must hold a JSON object {{task_id: rate}}.")
        for task_id, rate in prior.items():
            _check_rate(task_id, rate, f"prior file '{path}'")
        return cls(alpha=alpha, prior=prior)

    # ------------------------------------------------------------------ the update
    def update(self, results: Mapping[str, Counts]) -> None:
        """One round: ŝ_i ← (1 − α)·ŝ_i + α·k_i/n_i for every task with n_i > 0 (first: ŝ_i = k_i/n_i)."""
        checked = {str(task_id): _check_counts(task_id, counts) for task_id, counts in results.items()}
        for task_id, (k, n) in checked.items():
            if n == 0:
                continue  # no valid rollout: nothing was observed
            observed = k / n
            previous = self._rates.get(task_id)
            self._rates[task_id] = observed if previous is None else (1 - self.alpha) * previous + self.alpha * observed

    # ------------------------------------------------------------------ reading
    def get(self, task_id: str) -> float | None:
        """ŝ_i, or None for a task never observed (and without a prior)."""
        return self._rates.get(task_id)

    def known(self, task_id: str) -> bool:
        return task_id in self._rates

    @property
    def rates(self) -> dict[str, float]:
        """A copy of {task_id: ŝ_i}."""
        return dict(self._rates)

    def __len__(self) -> int:
        return len(self._rates)

    def copy(self) -> SuccessRateRecorder:
        """An independent copy (e.g. the record before this round's update, which SR-Adv reads)."""
        clone = SuccessRateRecorder(alpha=self.alpha)
        clone._rates = dict(self._rates)
        return clone

    # ------------------------------------------------------------------ summaries (logged each round)
    def mean(self) -> float:
        """Mean ŝ over known tasks (`tasks/sr_mean`); NaN when no task is known yet."""
        return sum(self._rates.values()) / len(self._rates) if self._rates else math.nan

    def count_above(self, s0: float) -> int:
        """Number of tasks with ŝ_i ≥ s0 (`tasks/above_s0`, the paper's "tasks above 60%").

        ≥ rather than >: the cache C_Q is 0 < ŝ < s0, so a known task is exactly one of unsolved
        (ŝ = 0), in the cache, or counted here.
        """
        return sum(rate >= s0 for rate in self._rates.values())

    def cache(self, s0: float) -> list[str]:
        """C_Q = {j : 0 < ŝ_j < s0}, the tasks of intermediate difficulty, sorted by id."""
        return sorted(task_id for task_id, rate in self._rates.items() if 0.0 < rate < s0)

    @staticmethod
    def solve_counts(results: Mapping[str, Counts]) -> tuple[int, int, int]:
        """(all, none, partial): tasks of a round solved by every, no, or some valid rollout.

        Tasks with n_i = 0 are in none of the three.
        """
        solved_all = solved_none = partial = 0
        for task_id, counts in results.items():
            k, n = _check_counts(task_id, counts)
            if n == 0:
                continue
            if k == n:
                solved_all += 1
            elif k == 0:
                solved_none += 1
            else:
                partial += 1
        return solved_all, solved_none, partial

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Plain python types only, so `torch.load(..., weights_only=True)` can read it back.

        Only the rates are state: α is configuration (algo.alpha), so a resumed run uses the α it
        was started with now.
        """
        return {"rates": dict(self._rates)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "rates" not in state:
            raise ValueError("Not a SuccessRateRecorder state: the 'rates' entry is missing.")
        self._rates = {str(t): _check_rate(t, r, "checkpoint") for t, r in dict(state["rates"]).items()}

    def __repr__(self) -> str:
        return f"SuccessRateRecorder(alpha={self.alpha}, tasks={len(self._rates)})"
