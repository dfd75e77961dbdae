"""Expert demonstrations: run the scripted expert through the GUIEnv protocol, record Trajectories."""

from __future__ import annotations

import random
from collections.abc import Sequence

from steprl.envs.demos import expert_episode
from steprl.envs.minidesk.env import MiniDeskEnv
from steprl.types import Task, Trajectory


def collect_expert_demonstrations(
    env: MiniDeskEnv,
    tasks: Sequence[Task],
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    thought: str | None = None,
    success_threshold: float = 1.0,
) -> list[Trajectory]:
    """One expert episode per task, as ordinary `Trajectory` records (Turn.observation, response,
    action, action_valid, error filled; env times left at 0).

    Each task's mistakes (probability `epsilon` per step) come from its own RNG seeded with
    (`seed`, task id), so a demonstration does not depend on which other tasks were collected.
    `success` is score >= `success_threshold`.
    """
    trajectories = []
    for task in tasks:
        rng = random.Random(f"expert:{seed}:{task.id}")

        def choose() -> tuple[str, str]:
            response = env.expert_response(epsilon=epsilon, rng=rng, thought=thought)
            return response, response

        trajectories.append(expert_episode(env, task, choose, success_threshold)[0])
    return trajectories
