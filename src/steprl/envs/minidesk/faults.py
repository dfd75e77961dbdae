"""Simulated VM behaviour for framework tests: latency (sleeps) and injected faults.

Real GUI environments are slow (OSWorld sleeps seconds per step) and fail (VMs crash, screenshots
hang). These knobs let the rollout code's timing, timeout and retry paths be tested on CPU. All
draws come from RNGs seeded with `fault_seed` (None: OS entropy), one stream for latency jitter
and one for faults, so a run is reproducible; every call draws the same count of numbers.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field


def _check_probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return value


def _check_non_negative(name: str, value: float) -> float:
    value = float(value)
    if value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


@dataclass
class SimulatedLatency:
    """Sleeps `base · (1 + u)` seconds, u ~ Uniform(−jitter, +jitter), per step and per reset."""

    step_s: float = 0.0
    reset_s: float = 0.0
    jitter: float = 0.0
    seed: int | None = 0  # None: OS entropy (a restarted worker does not replay the same draws)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.step_s = _check_non_negative("step_latency_s", self.step_s)
        self.reset_s = _check_non_negative("reset_latency_s", self.reset_s)
        self.jitter = _check_probability("latency_jitter", self.jitter)
        self._rng = random.Random(f"latency:{self.seed}" if self.seed is not None else None)

    def _sleep(self, base: float) -> None:
        u = self._rng.uniform(-self.jitter, self.jitter)
        if base > 0.0:
            time.sleep(base * (1.0 + u))

    def on_step(self) -> None:
        self._sleep(self.step_s)

    def on_reset(self) -> None:
        self._sleep(self.reset_s)


class InjectedFault(RuntimeError):
    """A fault raised on purpose by MiniDesk's fault injection (a simulated VM crash)."""


@dataclass
class FaultInjector:
    """With the given probabilities, a step / reset raises `InjectedFault` (a RuntimeError) or
    hangs for `hang_s` seconds before going on (a simulated stuck VM). Both happen before the
    action is executed, so a raised step leaves the state unchanged."""

    step_raise_prob: float = 0.0
    step_hang_prob: float = 0.0
    reset_raise_prob: float = 0.0
    reset_hang_prob: float = 0.0
    hang_s: float = 3600.0
    seed: int | None = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("step_raise_prob", "step_hang_prob", "reset_raise_prob", "reset_hang_prob"):
            setattr(self, name, _check_probability(f"fault_{name}", getattr(self, name)))
        self.hang_s = _check_non_negative("fault_hang_s", self.hang_s)
        self._rng = random.Random(f"faults:{self.seed}" if self.seed is not None else None)

    def _maybe_fail(self, what: str, raise_prob: float, hang_prob: float) -> None:
        raise_draw, hang_draw = self._rng.random(), self._rng.random()
        if raise_draw < raise_prob:
            raise InjectedFault(f"MiniDesk injected fault: {what} failed (fault_{what}_raise_prob={raise_prob})")
        if hang_draw < hang_prob:
            time.sleep(self.hang_s)

    def on_step(self) -> None:
        self._maybe_fail("step", self.step_raise_prob, self.step_hang_prob)

    def on_reset(self) -> None:
        self._maybe_fail("reset", self.reset_raise_prob, self.reset_hang_prob)
