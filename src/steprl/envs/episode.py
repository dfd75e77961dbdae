"""What every benchmark adapter does the same way around its own action execution: counting steps,
ending the episode (terminal action, the benchmark's own end, the step budget), the info dict of a
step, and refusing snapshots it cannot take."""

from __future__ import annotations

from typing import Any

from steprl.types import Observation, StepResult


class Episode:
    """Step counter and end of one episode. `ended_by` is the terminal action type, a benchmark's
    own reason ("page", ...) or "budget"; the first reason to end the episode is kept."""

    def __init__(self) -> None:
        self.begin(0)

    def begin(self, budget: int) -> None:
        self.budget, self.steps, self.done, self.ended_by = int(budget), 0, False, None

    def end(self, reason: str) -> None:
        if not self.done:
            self.done, self.ended_by = True, reason

    def count_step(self) -> None:
        """One turn used (valid or not); the budget ends the episode."""
        self.steps += 1
        if self.steps >= self.budget:
            self.end("budget")

    def info(self, **fields: Any) -> dict[str, Any]:
        """A step's info: the adapter's fields plus `steps` and `ended_by`."""
        return {**fields, "steps": self.steps, "ended_by": self.ended_by}

    def over(self, observation: Observation | None) -> StepResult:
        """The answer to a step after the episode ended: nothing runs."""
        info = self.info(action_valid=False, error="the episode is over; call reset(task)", action=None)
        return StepResult(observation, True, info)  # type: ignore[arg-type]


class NoSnapshots:
    """For environments that cannot copy a running episode (VMs, browsers, emulators)."""

    supports_snapshot = False

    def snapshot(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} cannot snapshot a running episode (supports_snapshot=False); use algo.aug_reward=equivalence."
        )

    def restore(self, state: Any) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} cannot restore an episode state (supports_snapshot=False); use algo.aug_reward=equivalence."
        )
