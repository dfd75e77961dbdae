"""Extension 1: credit for the steps of failed trajectories (docs/extensions.md, section 1).

STEP trains only on successful trajectories, so on a hard task most of a round's rollouts teach
nothing. Many of those failures still pass through states from which other rollouts went on to
succeed. This module scores every state by how often the rollouts that passed through it
succeeded, and gives each step of a failed trajectory the change in that score:

    promise   v(s) = (k(s) + β·p) / (n(s) + β)
    advantage A_t = w · (v(s_{t+1}) − v(s_t))          (baseline "state", the default)
              A_t = w · (v(s_{t+1}) − p)               (baseline "task")

with, per task and per anchor state s (`anchor_key`, the states GiGPO groups by):

    n(s)  rollouts that passed through s (each rollout counted once per state),
    k(s)  how many of them succeeded,
    p     the task's success rate K / N over the same rollouts,
    β     prior strength in pseudo-rollouts (`prior_strength`, default 2): an unvisited state's
          promise is p, a state seen once moves only part of the way from p to its outcome,
    w     weight (`weight`, default 0.5), so failed steps push less than SR-Adv's 1 − ŝ_i.

All counts are leave-one-out: the trajectory being scored is removed from them, so a state
counts as known only when some *other* rollout visited it. A step whose resulting state s_{t+1}
no other rollout visited (fewer than `min_visits`) gets A_t = 0: nothing is known about it. The
last step of a trajectory that ended with a terminal action (finished / call_user) is known to
have led to failure: v(s_T) = 0 (`penalise_terminal`, default on), so giving up or declaring
victory from a promising state is pushed down.

`StateSuccessRecord` keeps (k(s), n(s)) across rounds (cumulative, or discounted by `decay`) and
is saved in the checkpoint; `failed_step_advantages` merges it with the current round.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from steprl.algo.advantages import anchor_key
from steprl.algo.success_rate import is_success
from steprl.types import Trajectory

BASELINES = ("state", "task")


def trajectory_states(trajectory: Trajectory) -> list[str | None]:
    """The anchor states s_0 .. s_T of a trajectory: the observation each turn acted on, then the
    observation after the last action (None when the collector kept no final observation)."""
    states: list[str | None] = [anchor_key(turn.observation) for turn in trajectory.turns]
    final = trajectory.final_observation
    states.append(anchor_key(final) if final is not None else None)
    return states


def _visited(trajectory: Trajectory) -> set[str]:
    """The distinct anchor states a trajectory passed through (a revisit counts once)."""
    return {state for state in trajectory_states(trajectory) if state is not None}


class StateSuccessRecord:
    """(k(s), n(s)) per (task, anchor state) and (K, N) per task, over past rounds.

    `decay` (default 1.0 = cumulative) multiplies every count before a round is added, so with
    decay d a rollout r rounds old counts d^r: the record follows a policy that changes. Entries
    whose n falls below `min_count` after decay are forgotten, which bounds memory.
    """

    def __init__(self, decay: float = 1.0, min_count: float = 1e-3) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"algo.failed_credit_decay={decay} must be in (0, 1] (1 keeps every round at full weight).")
        self.decay = float(decay)
        self.min_count = float(min_count)
        self._states: dict[str, dict[str, list[float]]] = {}  # task -> anchor -> [k, n]
        self._totals: dict[str, list[float]] = {}  # task -> [K, N]

    # ------------------------------------------------------------------ the update
    def update(self, trajectories: Iterable[Trajectory], success_threshold: float | None = None) -> None:
        """One round: decay every count, then add each valid trajectory (env errors are skipped,
        as in the success-rate record) once to its task and once to every state it visited."""
        if self.decay < 1.0:
            self._decay()
        for trajectory in trajectories:
            if not trajectory.valid:
                continue
            task_id = trajectory.task.id
            success = float(is_success(trajectory, success_threshold))
            total = self._totals.setdefault(task_id, [0.0, 0.0])
            total[0] += success
            total[1] += 1.0
            states = self._states.setdefault(task_id, {})
            for state in _visited(trajectory):
                k_n = states.setdefault(state, [0.0, 0.0])
                k_n[0] += success
                k_n[1] += 1.0

    def add_round(self, round_states: Sequence[Mapping[str, Any]]) -> None:
        """One round given as counts rather than trajectories: decay every count once, then add
        each `state_dict()` of a record that holds only this round (one per rank under DDP, whose
        trajectories the other ranks never see)."""
        parts = []
        for state in round_states:
            part = StateSuccessRecord()
            part.load_state_dict(state)
            parts.append(part)
        if self.decay < 1.0:
            self._decay()
        for part in parts:
            for task_id, (k, n) in part._totals.items():
                total = self._totals.setdefault(task_id, [0.0, 0.0])
                total[0], total[1] = total[0] + k, total[1] + n
            for task_id, states in part._states.items():
                mine = self._states.setdefault(task_id, {})
                for state_key, (k, n) in states.items():
                    entry = mine.setdefault(state_key, [0.0, 0.0])
                    entry[0], entry[1] = entry[0] + k, entry[1] + n

    def _decay(self) -> None:
        for task_id in list(self._totals):
            self._totals[task_id] = [c * self.decay for c in self._totals[task_id]]
            states = self._states.get(task_id, {})
            for state in list(states):
                states[state] = [c * self.decay for c in states[state]]
                if states[state][1] < self.min_count:
                    del states[state]
            if self._totals[task_id][1] < self.min_count:
                del self._totals[task_id]
                self._states.pop(task_id, None)

    # ------------------------------------------------------------------ reading
    def state_counts(self, task_id: str, state: str) -> tuple[float, float]:
        """(k(s), n(s)); (0, 0) for a state never recorded."""
        k, n = self._states.get(task_id, {}).get(state, (0.0, 0.0))
        return float(k), float(n)

    def task_counts(self, task_id: str) -> tuple[float, float]:
        """(K, N) of a task; (0, 0) for a task never recorded."""
        k, n = self._totals.get(task_id, (0.0, 0.0))
        return float(k), float(n)

    def num_states(self) -> int:
        """Anchor states held, over all tasks (logged to watch memory)."""
        return sum(len(states) for states in self._states.values())

    def copy(self) -> StateSuccessRecord:
        clone = StateSuccessRecord(self.decay, self.min_count)
        clone.load_state_dict(self.state_dict())
        return clone

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Plain python types only (torch.load(weights_only=True) and JSON can read it back).
        `decay` is configuration, not state."""
        return {
            "totals": {task: list(counts) for task, counts in self._totals.items()},
            "states": {task: {s: list(c) for s, c in states.items()} for task, states in self._states.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "totals" not in state or "states" not in state:
            raise ValueError("Not a StateSuccessRecord state: the 'totals' or 'states' entry is missing.")
        totals = {str(task): _check_counts(task, counts) for task, counts in dict(state["totals"]).items()}
        states = {
            str(task): {str(s): _check_counts(f"{task}/{s}", c) for s, c in dict(per_task).items()}
            for task, per_task in dict(state["states"]).items()
        }
        self._totals, self._states = totals, states

    def __repr__(self) -> str:
        return f"StateSuccessRecord(decay={self.decay}, tasks={len(self._totals)}, states={self.num_states()})"


def _check_counts(name: str, counts: Any) -> list[float]:
    try:
        k, n = (float(c) for c in counts)
    except (TypeError, ValueError):
        raise ValueError(f"State record entry '{name}': expected [k, n], got {counts!r}.") from None
    if not (math.isfinite(k) and math.isfinite(n)) or k < 0 or n < 0 or k > n + 1e-9:
        raise ValueError(f"State record entry '{name}': counts k={k}, n={n} need 0 <= k <= n.")
    return [k, n]


def promise(k: float, n: float, task_rate: float, prior_strength: float) -> float:
    """v(s) = (k + β·p) / (n + β): the smoothed success rate of rollouts through s, pulled
    towards the task's rate p; p itself when n = 0 (and β > 0)."""
    if n + prior_strength <= 0.0:
        return task_rate
    return (k + prior_strength * task_rate) / (n + prior_strength)


def failed_step_advantages(
    trajectories: Sequence[Trajectory],
    success_threshold: float | None,
    record: StateSuccessRecord | None = None,
    *,
    weight: float = 0.5,
    prior_strength: float = 2.0,
    min_visits: float = 1.0,
    baseline: str = "state",
    penalise_terminal: bool = True,
) -> list[np.ndarray | None]:
    """One advantage per step of every failed trajectory of the round; None for successes and
    env-error rollouts (SR-Adv handles the first, nothing trains on the second).

    The counts are `record` (past rounds; pass it *before* updating it with this round) plus
    this round's valid trajectories, minus the trajectory being scored. Formula and knobs:
    module docstring. A failed trajectory with no turns gets an empty array.
    """
    if baseline not in BASELINES:
        raise ValueError(f"algo.failed_credit_baseline={baseline!r}: use one of {', '.join(BASELINES)}.")
    if weight < 0.0 or prior_strength < 0.0 or min_visits <= 0.0:
        raise ValueError(
            f"Failed-trajectory credit needs weight >= 0 (got {weight}), prior_strength >= 0 (got {prior_strength}) "
            f"and min_visits > 0 (got {min_visits}); see algo.failed_credit_*."
        )
    counts = record.copy() if record is not None else StateSuccessRecord()
    counts.decay = 1.0  # this round is added on top of the history as it stands now
    counts.update(trajectories, success_threshold)

    result: list[np.ndarray | None] = []
    for trajectory in trajectories:
        if not trajectory.valid or is_success(trajectory, success_threshold):
            result.append(None)
            continue
        result.append(
            _failed_trajectory_advantages(
                trajectory, counts, weight, prior_strength, min_visits, baseline, penalise_terminal
            )
        )
    return result


def _failed_trajectory_advantages(
    trajectory: Trajectory,
    counts: StateSuccessRecord,
    weight: float,
    prior_strength: float,
    min_visits: float,
    baseline: str,
    penalise_terminal: bool,
) -> np.ndarray:
    """A_t for one failed trajectory, its own visit removed from every count (leave-one-out)."""
    task_id = trajectory.task.id
    big_k, big_n = counts.task_counts(task_id)
    big_n -= 1.0  # leave this (failed) trajectory out: K is unchanged
    task_rate = big_k / big_n if big_n > 0.0 else 0.0

    def value(state: str | None) -> tuple[float, bool]:
        """(v(s), known) with this trajectory's visit left out."""
        if state is None:
            return task_rate, False
        k, n = counts.state_counts(task_id, state)
        n -= 1.0  # every state of the trajectory was counted once for it
        return promise(k, n, task_rate, prior_strength), n >= min_visits - 1e-9

    states = trajectory_states(trajectory)
    advantages = np.zeros(trajectory.length, dtype=np.float64)
    for t in range(trajectory.length):
        last_action = trajectory.turns[t].action
        if t == trajectory.length - 1 and penalise_terminal and last_action is not None and last_action.is_terminal:
            next_value, next_known = 0.0, True  # the episode ended here, and failed
        else:
            next_value, next_known = value(states[t + 1])
        if not next_known:
            continue  # nothing is known about where this step led
        before = value(states[t])[0] if baseline == "state" else task_rate
        advantages[t] = weight * (next_value - before)
    return advantages
