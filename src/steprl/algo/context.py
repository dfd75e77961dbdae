"""Policy contexts (dialogues) built from trajectories: the step history window and whole trajectories.

The same functions build the context at rollout time (what the policy sees when it acts) and at
training time (what it is trained on), so the two agree wherever the algorithm allows it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from steprl.types import Dialogue, DialogueTurn, Trajectory, Turn


def step_dialogue(
    instruction: str,
    previous_turns: Sequence[Turn],
    screenshot: np.ndarray,
    *,
    num_responses: int = 3,
    num_screenshots: int = 0,
    response: str = "",
    response_ids: tuple[int, ...] = (),
    response_logprobs: tuple[float, ...] = (),
    trainable: bool = False,
    a11y: str | None = None,
) -> Dialogue:
    """The context of one step: the last `num_responses` (k) previous responses, the last
    `num_screenshots` (m) of those with their screenshots, then the current screenshot.

    docs/algorithm.md §3: history window k = 3 responses, m = 0 screenshots by default. m is capped at k:
    a screenshot is shown only together with the response that followed it. `response` /
    `response_ids` (and the sampler's `response_logprobs`) fill the current turn for a training
    sample; leave them empty for generation.
    """
    if num_responses < 0 or num_screenshots < 0:
        raise ValueError("history window sizes must be >= 0")
    window = list(previous_turns)[-num_responses:] if num_responses > 0 else []
    first_with_image = len(window) - min(num_screenshots, len(window))
    history = [
        DialogueTurn(
            screenshot=turn.observation.screenshot if i >= first_with_image else None,
            response=turn.response,
            response_ids=turn.response_ids,
        )
        for i, turn in enumerate(window)
    ]
    current = DialogueTurn(
        screenshot, response=response, response_ids=response_ids, trainable=trainable, response_logprobs=response_logprobs
    )
    return Dialogue(instruction=instruction, turns=history + [current], a11y=a11y)


def trajectory_dialogue(trajectory: Trajectory, *, max_images: int = 5) -> Dialogue:
    """A whole trajectory as one training sequence (T-GRPO): every response trainable, the
    screenshots of the last `max_images` turns shown, older turns kept as text."""
    turns = trajectory.turns
    first_with_image = len(turns) - min(max_images, len(turns))
    return Dialogue(
        instruction=trajectory.task.instruction,
        turns=[
            DialogueTurn(
                screenshot=turn.observation.screenshot if i >= first_with_image else None,
                response=turn.response,
                response_ids=turn.response_ids,
                trainable=True,
                response_logprobs=turn.response_logprobs,
            )
            for i, turn in enumerate(turns)
        ],
    )
