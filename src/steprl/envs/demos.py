"""The episode loop of every benchmark's expert demonstrations: act, record each turn as a rollout
would, score the end."""

from __future__ import annotations

from collections.abc import Callable

from steprl.types import Task, Trajectory, Turn


def expert_episode(env, task: Task, choose: Callable[[], tuple[str, str]], success_threshold: float) -> tuple[Trajectory, list[str]]:
    """One episode of `task` on `env` (any GUIEnv). In each state `choose()` returns (the response
    to take, the clean expert's label for that state); the two differ where a demonstration makes a
    mistake on purpose. Returns the trajectory (Turn.observation, response, action, action_valid,
    error filled; env times left at 0) and the labels, one per turn. `trajectory.success` is score
    >= `success_threshold`."""
    observation = env.reset(task)
    trajectory, labels = Trajectory(task=task), []
    done = False
    while not done:
        response, label = choose()
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
        labels.append(label)
        observation, done = result.observation, result.done
    trajectory.score = env.evaluate()
    trajectory.success = trajectory.score >= success_threshold
    trajectory.final_observation = observation
    return trajectory, labels
