"""Expert demonstrations: run the scripted expert through the GUIEnv protocol, record Trajectories."""

from __future__ import annotations

import random
from collections.abc import Sequence

from steprl.envs.minidesk.env import MiniDeskEnv
from steprl.types import Task, Trajectory, Turn


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
        observation = env.reset(task)
        trajectory = Trajectory(task=task)
        done = False
        while not done:
            response = env.expert_response(epsilon=epsilon, rng=rng, thought=thought)
            result = env.step(response)
            info = result.info
            trajectory.turns.append(
                Turn(
                    observation=observation,
                    response=response,
                    action=info.get("action"),
                    action_valid=bool(info.get("action_valid", True)),
                    error=info.get("error"),
                )
            )
            observation, done = result.observation, result.done
        trajectory.score = env.evaluate()
        trajectory.success = trajectory.score >= success_threshold
        trajectory.final_observation = observation
        trajectories.append(trajectory)
    return trajectories
