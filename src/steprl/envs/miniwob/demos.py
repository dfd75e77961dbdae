"""Expert demonstrations on MiniWoB++ pages, with mistakes and the expert's correction of each.

The scripted expert (expert.py) is stateless: it reads the page and says the next action, so it
can label any state, including one reached after a mistake. A demonstration episode therefore
acts with the expert, except that with probability `epsilon` per step it makes a plausible mistake
(a click on a random visible element, or on a random pixel); every visited state is labelled with
the clean expert's response. A policy trained on the labels also learns to recover.

A mistake can end a MiniWoB++ episode (a click on the wrong button submits a wrong answer): the
trajectory then stops there, which is what a learner's own mistakes would do too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from steprl.actions import action_to_response
from steprl.envs.demos import expert_episode
from steprl.envs.miniwob.commands import SCREEN_SIZE
from steprl.envs.miniwob.expert import elements_from_dom
from steprl.types import Action, Task, Trajectory


@dataclass
class Demonstration:
    """One expert episode: what was done (`trajectory.turns[t].response`, a mistake or the
    expert's action) and what the clean expert says in each visited state (`labels[t]`)."""

    trajectory: Trajectory
    labels: list[str] = field(default_factory=list)

    @property
    def mistakes(self) -> int:
        """How many turns did something else than the label."""
        return sum(turn.response != label for turn, label in zip(self.trajectory.turns, self.labels))


def mistake_response(env, rng: random.Random) -> str:
    """A plausible wrong action on the current page: click the centre of a random visible element
    (buttons, links, inputs and text alike) or, one time in four, a random pixel."""
    elements = [e for e in elements_from_dom(env.page.get("dom_elements", ())) if e.width > 0 and e.height > 0 and e.tag != "body"]
    if elements and rng.random() < 0.75:
        point = rng.choice(elements).centre
    else:
        point = (rng.randrange(SCREEN_SIZE[0]), rng.randrange(SCREEN_SIZE[1]))
    return action_to_response(Action("click", point=point), SCREEN_SIZE, env.coords, env.model_image_size)


def collect_expert_demonstrations(
    env,
    tasks: Sequence[Task],
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    success_threshold: float = 1.0,
) -> list[Demonstration]:
    """One demonstration episode per task on `env` (a `MiniWoBEnv`), in task order.

    Each task's mistakes come from its own RNG seeded with (`seed`, task id), so a demonstration
    does not depend on which other tasks were collected. `trajectory.success` is score >=
    `success_threshold`.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    demonstrations = []
    for task in tasks:
        rng = random.Random(f"miniwob-expert:{seed}:{task.id}")

        def choose() -> tuple[str, str]:
            label = env.expert_response()
            return (mistake_response(env, rng) if epsilon > 0 and rng.random() < epsilon else label), label

        demonstrations.append(Demonstration(*expert_episode(env, task, choose, success_threshold)))
    return demonstrations
