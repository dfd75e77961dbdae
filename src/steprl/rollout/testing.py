"""Small stand-ins for an environment and a policy, for the rollout tests and benchmark.

They live in the package (not under tests/) so that spawned worker processes and Ray actors can
import them by path ("steprl.rollout.testing:CounterEnv"). `CounterEnv` has the same latency and
fault-injection knobs as MiniDesk, so the tests can run on either.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from collections.abc import Callable, Sequence

import numpy as np

from steprl.types import Action, Dialogue, Generation, Observation, StepResult, Task

UP, DOWN, FINISH = "Action: press(key='up')", "Action: press(key='down')", "Action: finished()"
COUNTER_ENV = "steprl.rollout.testing:CounterEnv"

#: Generic UI-TARS actions that MiniDesk (448x280 screen) accepts, for fake policies on MiniDesk.
MINIDESK_ACTIONS = (
    "Thought: try the left side.\nAction: click(start_box='(60,60)')",
    "Thought: try the middle.\nAction: click(start_box='(224,140)')",
    "Thought: look further down.\nAction: scroll(start_box='(224,140)', direction='down')",
    "Thought: save.\nAction: hotkey(key='ctrl s')",
    "Thought: wait for it.\nAction: wait()",
    "Thought: done.\nAction: finished()",
)


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


# ----------------------------------------------------------------------------------------------
# Fake policies: record what they were asked, answer without a model
# ----------------------------------------------------------------------------------------------


class FakePolicy:
    """Base of the fakes: answers each dialogue with `respond(dialogue)`, records batch sizes,
    optionally sleeps `delay_s` per call (a simulated generation cost)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []
        self.greedy_flags: list[bool] = []

    @property
    def calls(self) -> int:
        return len(self.batch_sizes)

    def generate(
        self, dialogues: list[Dialogue], *, greedy: bool = False, temperature: float | None = None
    ) -> list[Generation]:
        self.batch_sizes.append(len(dialogues))
        self.greedy_flags.append(greedy)
        if self.delay_s:
            time.sleep(self.delay_s)
        return [make_generation(self.respond(d, greedy)) for d in dialogues]

    def respond(self, dialogue: Dialogue, greedy: bool) -> str:
        raise NotImplementedError


class ScriptedPolicy(FakePolicy):
    """Answers with `script(dialogue)` (a function) or a fixed text."""

    def __init__(self, script: str | Callable[[Dialogue], str], delay_s: float = 0.0):
        super().__init__(delay_s)
        self.script = script

    def respond(self, dialogue: Dialogue, greedy: bool) -> str:
        return self.script(dialogue) if callable(self.script) else self.script


class CounterExpert(FakePolicy):
    """Solves CounterEnv: moves toward the goal read from the instruction, then finishes."""

    def respond(self, dialogue: Dialogue, greedy: bool) -> str:
        value, goal = counter_value(dialogue), counter_goal(dialogue)
        action = FINISH if value == goal else UP if value < goal else DOWN
        return f"Thought: the counter shows {value}, I want {goal}.\n{action}"


class HashPolicy(FakePolicy):
    """Picks one of `choices` from a hash of (seed, the whole dialogue): a pure function of its
    input, so the trajectories do not depend on how envs were scheduled or batched. Greedy decoding
    picks among the first two choices only (a different rule, still a function of the input)."""

    def __init__(self, choices: Sequence[str] = (UP, UP, DOWN, FINISH), seed: int = 0, delay_s: float = 0.0):
        super().__init__(delay_s)
        self.choices = list(choices)
        self.seed = seed

    def respond(self, dialogue: Dialogue, greedy: bool) -> str:
        digest = dialogue_digest(dialogue, self.seed)
        if greedy:
            return self.choices[digest % 2]  # a narrower, still input-determined choice
        return self.choices[digest % len(self.choices)]


class RandomPolicy(FakePolicy):
    """Draws from `choices` with its own seeded generator, in call order: the trajectories are
    reproducible only if the collector schedules and batches identically (the determinism test)."""

    def __init__(self, choices: Sequence[str] = (UP, UP, DOWN, FINISH), seed: int = 0, delay_s: float = 0.0):
        super().__init__(delay_s)
        self.choices = list(choices)
        self.rng = np.random.default_rng(seed)

    def respond(self, dialogue: Dialogue, greedy: bool) -> str:
        return self.choices[int(self.rng.integers(len(self.choices)))]


def dialogue_digest(dialogue: Dialogue, seed: int = 0) -> int:
    """A stable integer hash of a dialogue's instruction, responses and screenshots."""
    h = hashlib.sha256(f"{seed}|{dialogue.instruction}".encode())
    for turn in dialogue.turns:
        h.update(turn.response.encode())
        if turn.screenshot is not None:
            h.update(np.ascontiguousarray(turn.screenshot).tobytes())
    return int.from_bytes(h.digest()[:8], "little")


def make_generation(text: str) -> Generation:
    """A Generation with byte-level token ids and zero log-probs (no model behind it)."""
    ids = tuple(text.encode())
    return Generation(text=text, token_ids=ids, logprobs=tuple(0.0 for _ in ids))
