"""CounterEnv: a one-number "desktop", a real registered environment ("counter") for tests and benchmarks.

It lives in the package, not under tests/, because env worker processes and Ray actors import it by
path ("steprl.envs.counter:CounterEnv"). It has MiniDesk's latency and fault-injection knobs, so the
rollout tests and `scripts/bench_rollout.py` can exercise timeouts, crashes and hangs in milliseconds.
"""

from __future__ import annotations

import os
import random
import re
import time

import numpy as np

from steprl.types import Action, Dialogue, Observation, StepResult, Task

UP, DOWN, FINISH = "Action: press(key='up')", "Action: press(key='down')", "Action: finished()"


class CounterEnv:
    """A one-number "desktop": press up/down to move a counter, then `finished()`.

    Task `goal` = the number to reach; score 1 if the counter equals the goal when the agent
    finishes, else 0. The screenshot is filled with the counter's value, so every state looks
    different. Fault knobs mirror MiniDesk's: `fault_*_raise_prob` raise, `fault_*_hang_prob` sleep
    `fault_hang_s` first, `fault_step_die_prob` ends the whole process (process workers only).
    `fault_seed=None` draws faults from OS entropy, so a restarted worker does not replay the same
    faults; an int makes them reproducible.
    """

    supports_snapshot = False

    def __init__(
        self,
        step_latency_s: float = 0.0,
        reset_latency_s: float = 0.0,
        latency_jitter: float = 0.0,
        fault_step_raise_prob: float = 0.0,
        fault_step_hang_prob: float = 0.0,
        fault_step_die_prob: float = 0.0,
        fault_reset_raise_prob: float = 0.0,
        fault_reset_hang_prob: float = 0.0,
        fault_evaluate_raise_prob: float = 0.0,
        fault_hang_s: float = 60.0,
        fault_seed: int | None = None,
        fail_to_build: bool = False,
        max_steps: int = 10,
        screen_size: tuple[int, int] = (16, 12),
        num_tasks: int = 8,
    ):
        if fail_to_build:
            raise RuntimeError("CounterEnv was asked to fail (fail_to_build=True)")
        self.step_latency_s = step_latency_s
        self.reset_latency_s = reset_latency_s
        self.latency_jitter = latency_jitter
        self.faults = {
            "step_raise": fault_step_raise_prob,
            "step_hang": fault_step_hang_prob,
            "step_die": fault_step_die_prob,
            "reset_raise": fault_reset_raise_prob,
            "reset_hang": fault_reset_hang_prob,
            "evaluate_raise": fault_evaluate_raise_prob,
        }
        self.fault_hang_s = fault_hang_s
        self.max_steps = max_steps
        self.num_tasks = num_tasks
        self._size = (int(screen_size[0]), int(screen_size[1]))
        self._rng = random.Random(fault_seed)  # faults and latency jitter only
        self._task: Task | None = None
        self._value = 0
        self._steps = 0
        self._finished = False
        self.closed = False

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._size

    def tasks(self, split: str) -> list[Task]:
        offset = 0 if split == "train" else 100
        return [
            Task(
                id=f"counter-{split}-{i}",
                family="counter",
                instruction=f"Set the counter to {1 + (i + offset) % 4}, then finish.",
                difficulty=1 + (i + offset) % 4,
                split=split,
                config={"goal": 1 + (i + offset) % 4},
            )
            for i in range(self.num_tasks)
        ]

    def reset(self, task: Task) -> Observation:
        self._maybe_fault("reset")
        self._sleep(self.reset_latency_s)
        self._task, self._value, self._steps, self._finished = task, 0, 0, False
        return self._observe()

    def step(self, response_text: str) -> StepResult:
        if self._task is None:
            raise RuntimeError("step() before reset()")
        self._maybe_fault("step")
        self._sleep(self.step_latency_s)
        self._steps += 1
        action, error = parse_counter_action(response_text)
        if action is not None and action.type == "finished":
            self._finished = True
        elif action is not None:
            self._value += 1 if action.text == "up" else -1
        budget = self._task.max_steps or self.max_steps
        done = self._finished or self._steps >= budget
        info = {"action_valid": action is not None, "error": error, "action": action}
        return StepResult(self._observe(), done, info)

    def evaluate(self) -> float:
        self._maybe_fault("evaluate")
        goal = self._task.config["goal"] if self._task is not None else None
        return float(self._finished and self._value == goal)

    def snapshot(self) -> None:
        raise NotImplementedError("CounterEnv does not support snapshots")

    def restore(self, state: object) -> None:
        raise NotImplementedError("CounterEnv does not support snapshots")

    def close(self) -> None:
        self.closed = True

    # ---- internals ---------------------------------------------------------------------------

    def _observe(self) -> Observation:
        width, height = self._size
        screenshot = np.full((height, width, 3), self._value % 256, dtype=np.uint8)
        return Observation(
            screenshot=screenshot,
            instruction=self._task.instruction if self._task else "",
            state_hash=f"counter={self._value}",
        )

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            jitter = self._rng.uniform(-self.latency_jitter, self.latency_jitter) if self.latency_jitter else 0.0
            time.sleep(seconds * (1.0 + jitter))

    def _maybe_fault(self, op: str) -> None:
        if self._rng.random() < self.faults.get(f"{op}_hang", 0.0):
            time.sleep(self.fault_hang_s)
        if self._rng.random() < self.faults.get(f"{op}_die", 0.0):
            os._exit(3)
        if self._rng.random() < self.faults.get(f"{op}_raise", 0.0):
            raise RuntimeError(f"injected {op} fault")


def parse_counter_action(text: str) -> tuple[Action | None, str | None]:
    """`press(key='up'|'down')` or `finished()` after "Action:"; anything else is invalid."""
    match = re.search(r"Action:\s*(press\(key='(up|down)'\)|finished\(\))", text)
    if match is None:
        return None, f"could not parse an action from {text[-60:]!r}"
    if match.group(2):
        return Action("press", text=match.group(2)), None
    return Action("finished"), None


def counter_value(dialogue: Dialogue) -> int:
    """The counter shown on the current screenshot of a CounterEnv context."""
    return int(dialogue.turns[-1].screenshot[0, 0, 0])


def counter_goal(dialogue: Dialogue) -> int:
    return int(re.search(r"counter to (\d+)", dialogue.instruction).group(1))  # type: ignore[union-attr]
