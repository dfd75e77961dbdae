"""Test doubles: policies that answer without a model, for the rollout and round tests and the
rollout benchmark. The environment they drive, CounterEnv, is a registered env of its own
(`steprl.envs.counter`), since env worker processes must import it by path.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from steprl.envs.counter import DOWN, FINISH, UP, CounterEnv, counter_goal, counter_value, parse_counter_action  # noqa: F401
from steprl.types import Dialogue, Generation

COUNTER_ENV = "steprl.envs.counter:CounterEnv"  # its "module:attribute" path; registered as "counter"

#: Generic UI-TARS actions that MiniDesk (448x280 screen) accepts, for fake policies on MiniDesk.
MINIDESK_ACTIONS = (
    "Thought: try the left side.\nAction: click(start_box='(60,60)')",
    "Thought: try the middle.\nAction: click(start_box='(224,140)')",
    "Thought: look further down.\nAction: scroll(start_box='(224,140)', direction='down')",
    "Thought: save.\nAction: hotkey(key='ctrl s')",
    "Thought: wait for it.\nAction: wait()",
    "Thought: done.\nAction: finished()",
)


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


class ScriptedTokenPolicy(nn.Module):
    """A policy for CounterEnv with the whole interface the round uses (generate, collate,
    token_logprobs, reseed), and no model.

    Rollouts (`temperature=None`): solves tasks whose goal is at most `solvable_up_to` (up to the
    goal, then finished()), and gives up at once (finished() at 0) on the others. SL-GRPO calls pass a
    temperature: then it always answers press down, an action no expert step takes. Every target
    token gets log-prob `logp`.
    """

    def __init__(self, solvable_up_to: int = 2, logp: float = -0.5) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # a device and a train/eval mode, nothing else
        self.solvable_up_to = solvable_up_to
        self.logp = logp
        self.generate_calls: list[tuple[int, float | None]] = []

    def respond(self, dialogue: Dialogue, temperature: float | None) -> str:
        if temperature is not None:
            return f"Thought: something else.\n{DOWN}"
        value, goal = counter_value(dialogue), counter_goal(dialogue)
        if goal > self.solvable_up_to or value == goal:
            return f"Thought: done.\n{FINISH}"
        return f"Thought: {value} < {goal}.\n{UP}"

    def generate(self, dialogues: list[Dialogue], *, greedy: bool = False, temperature: float | None = None) -> list[Generation]:
        self.generate_calls.append((len(dialogues), temperature))
        return [make_generation(self.respond(d, temperature)) for d in dialogues]

    def collate(self, dialogues: list[Dialogue]) -> dict[str, torch.Tensor]:
        """One row per dialogue; the targets are the trainable responses' token ids (in order)."""
        targets = [[i for turn in d.turns if turn.trainable for i in (turn.response_ids or tuple(turn.response.encode()))] for d in dialogues]
        width = max([len(t) for t in targets] + [1]) + 1  # position 0 is context
        mask = torch.zeros((len(dialogues), width), dtype=torch.bool)
        for row, ids in enumerate(targets):
            mask[row, 1 : 1 + len(ids)] = True
        return {"target_mask": mask}

    def token_logprobs(self, batch: dict[str, torch.Tensor], *, with_entropy: bool = False) -> tuple[torch.Tensor, None]:
        mask = batch["target_mask"]
        return torch.where(mask, torch.full(mask.shape, self.logp), torch.zeros(mask.shape)) + 0.0 * self.anchor, None
