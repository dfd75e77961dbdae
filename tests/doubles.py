"""Test doubles: policies that answer without a model (the env side is the registered CounterEnv)."""

from __future__ import annotations

import torch
from torch import nn

from steprl.rollout.testing import DOWN, FINISH, UP, counter_goal, counter_value, make_generation
from steprl.types import Dialogue, Generation


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
