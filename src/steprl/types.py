"""Plain records shared by every layer of steprl.

Nothing here imports torch models, environments or Lightning: these are the words the layers use
to talk to each other (see docs/architecture.md, "Layout"). Screen coordinates are absolute pixels of the
environment's screen, origin top-left, x to the right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Tasks and observations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One task instance of an environment.

    `config` holds whatever the environment needs to set the task up (seeds, parameters, an OSWorld
    task JSON, ...). It must be picklable so that tasks can be sent to worker processes.
    """

    id: str
    family: str
    instruction: str
    difficulty: int = 1  # 1 (one step) .. 5 (long, varied); environments document their scale
    split: str = "train"  # "train" | "test"
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    feasible: bool = True  # False: the right answer is to give up (call_user / FAIL)
    max_steps: int | None = None  # per-task step budget; None = the environment's default


@dataclass
class Observation:
    """What the agent sees before acting."""

    screenshot: np.ndarray  # (H, W, 3) uint8 RGB
    instruction: str
    a11y: str | None = None  # accessibility text (one element per line), when the env provides it
    state_hash: str = ""  # identical states give identical hashes (GiGPO anchor states)

    @property
    def screen_size(self) -> tuple[int, int]:
        """(width, height) of the screenshot in pixels."""
        return int(self.screenshot.shape[1]), int(self.screenshot.shape[0])


# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------

#: The union of the UI-TARS computer-use and mobile-use action spaces.
ACTION_TYPES = (
    "click",
    "left_double",
    "right_single",
    "hover",
    "drag",
    "hotkey",
    "press",
    "keydown",
    "keyup",
    "type",
    "scroll",
    "wait",
    "finished",
    "call_user",
    "long_press",
    "open_app",
    "press_home",
    "press_back",
)

#: Actions that end an episode.
TERMINAL_ACTIONS = ("finished", "call_user")


@dataclass(frozen=True)
class Action:
    """A parsed GUI action in absolute screen pixels.

    `text` is the action's one string argument: the typed content for `type`, the keys for
    `hotkey`/`press`/`keydown`/`keyup` (space separated, lower case), the answer for `finished`,
    the app name for `open_app`.
    """

    type: str
    point: tuple[int, int] | None = None  # start_box, as a point
    end_point: tuple[int, int] | None = None  # end_box of drag
    text: str | None = None
    direction: str | None = None  # scroll: up | down | left | right

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_ACTIONS


@dataclass
class StepResult:
    """The outcome of one `GUIEnv.step`.

    `info` holds at least `action_valid` (bool) and `error` (str or None: why the action was
    invalid or what went wrong); environments may add more (the parsed `action`, ...).
    """

    observation: Observation
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Policy inputs and outputs
# --------------------------------------------------------------------------------------------


@dataclass
class DialogueTurn:
    """One turn of a policy context: an optional screenshot, then the model's response.

    A turn without a screenshot shows only the response (history kept as text). `response_ids` are
    the token ids the policy produced at rollout time; the training path reuses them verbatim so a
    response is never re-tokenised differently from how it was sampled. Empty ids mean "tokenise
    `response`" (expert demonstrations, SL-GRPO originals from other contexts).
    """

    screenshot: np.ndarray | None
    response: str = ""
    response_ids: tuple[int, ...] = ()
    trainable: bool = False  # the loss covers this turn's response tokens
    response_logprobs: tuple[float, ...] = ()  # the sampler's log-probs of response_ids (importance correction)


@dataclass
class Dialogue:
    """A policy context: the task instruction and a sequence of turns, oldest first.

    For generation the last turn carries the current screenshot and an empty response (the one to
    generate). For training, turns marked `trainable` carry the loss.
    """

    instruction: str
    turns: list[DialogueTurn]
    a11y: str | None = None  # accessibility text of the current observation (optional prompt part)

    @property
    def num_images(self) -> int:
        return sum(t.screenshot is not None for t in self.turns)


@dataclass(frozen=True)
class Generation:
    """One sampled response: its text, token ids and per-token log-probs under the sampler."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


# --------------------------------------------------------------------------------------------
# Rollouts
# --------------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One step of a trajectory: what was seen, what the policy said, what it did."""

    observation: Observation
    response: str
    response_ids: tuple[int, ...] = ()
    response_logprobs: tuple[float, ...] = ()
    action: Action | None = None  # None when the response did not parse
    action_valid: bool = True
    error: str | None = None
    env_time_s: float = 0.0
    generate_time_s: float = 0.0


@dataclass
class Trajectory:
    """One rollout of one task.

    A trajectory with `env_error` set was cut short by the environment (crash, hang, timeout): it is
    neither a success nor a failure, is excluded from success rates and from training, and is counted
    in `rollout/env_errors`.
    """

    task: Task
    turns: list[Turn] = field(default_factory=list)
    score: float = 0.0
    success: bool = False
    env_error: str | None = None
    final_observation: Observation | None = None
    copy_index: int = 0  # which copy of the task in this round's schedule
    attempts: int = 1  # 1 + retries after env errors
    reset_time_s: float = 0.0
    evaluate_time_s: float = 0.0

    @property
    def valid(self) -> bool:
        return self.env_error is None

    @property
    def length(self) -> int:
        return len(self.turns)

    @property
    def env_time_s(self) -> float:
        return self.reset_time_s + self.evaluate_time_s + sum(t.env_time_s for t in self.turns)

    @property
    def generate_time_s(self) -> float:
        return sum(t.generate_time_s for t in self.turns)

    @property
    def invalid_actions(self) -> int:
        return sum(not t.action_valid for t in self.turns)


# --------------------------------------------------------------------------------------------
# Training samples
# --------------------------------------------------------------------------------------------

#: Where a training sample came from (logged as train/samples vs train/aug_samples).
SAMPLE_SOURCES = ("step", "trajectory", "augment")


@dataclass
class TrainingSample:
    """One sequence the policy is trained on, with its advantage.

    - STEP / GiGPO step samples: the history window as untrainable turns + one trainable turn;
    - T-GRPO trajectory samples: every turn trainable;
    - SL-GRPO augmentation samples: a step context + one trainable alternative response.
    `old_logprobs` (per trainable token, in order) are filled in right before the update.
    """

    dialogue: Dialogue
    advantage: float
    task_id: str
    source: str = "step"
    weight: float = 1.0
    group: str = ""  # the advantage group (for logging and debugging)
    old_logprobs: tuple[float, ...] | None = None

    def rollout_logprobs(self) -> tuple[float, ...]:
        """The sampler's log-probs of every trainable token, in order; () when some trainable
        response was not sampled with its log-probs (expert text, an SL-GRPO original from text)."""
        values: list[float] = []
        for turn in self.dialogue.turns:
            if turn.trainable:
                if not turn.response_logprobs or len(turn.response_logprobs) != len(turn.response_ids):
                    return ()
                values += turn.response_logprobs
        return tuple(values)
