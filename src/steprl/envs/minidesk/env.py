"""MiniDeskEnv: the embedded, deterministic synthetic desktop behind the GUIEnv protocol."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steprl.actions import ActionParseError, action_to_response, model_frame, parse_response
from steprl.envs.minidesk import catalog
from steprl.envs.minidesk.dynamics import DESKTOP_ACTIONS, apply_action
from steprl.envs.minidesk.expert import ScriptedExpert
from steprl.envs.minidesk.faults import FaultInjector, SimulatedLatency
from steprl.envs.minidesk.goals import task_score
from steprl.envs.minidesk.layout import Layout
from steprl.envs.minidesk.render import Renderer
from steprl.envs.minidesk.state import DeskState, initial_state, state_hash
from steprl.envs.minidesk.tasks import build_splits, check_task_config
from steprl.envs.minidesk.widgets import ROLES, a11y_text
from steprl.types import Observation, StepResult, Task

OBSERVATIONS = ("screenshot", "a11y", "both")
THOUGHTS = (None, "short")

# UI text that is not in the catalog: status lines, a11y words, the expert's short thoughts.
_UI_WORDS = (
    "Last none Applied Not applied Results for No search yet Playing Selected Submitted Confirm Delete "
    "Query Songs Document Desktop close x Yes Go Play Submit Apply checked unchecked focused selected "
    "open active playing text value shortcut submenu Click Open Type Press Scroll down up Drag to Done "
    "This is not possible menu hotkey submitted yes no"
)
# The words of the expert's UI-TARS responses (format, action names, argument names).
_RESPONSE_WORDS = (
    "Thought Action click left_double right_single drag hotkey type scroll wait finished call_user "
    "start_box end_box key content direction up down left right"
)


@dataclass(frozen=True)
class MiniDeskSnapshot:
    """What `snapshot()` returns: the task and an independent copy of the state."""

    task: Task
    state: DeskState


class MiniDeskEnv:
    """A synthetic desktop (apps, menus, forms, lists, files) rendered with PIL, driven by UI-TARS
    text. See the package docstring for the keyword arguments."""

    supports_snapshot = True

    def __init__(
        self,
        screen_size: Sequence[int] = (448, 280),
        observation: str = "screenshot",
        coords: str = "absolute",
        model_image_size: Sequence[int] | None = None,
        max_steps: int = 15,
        num_train_tasks: int = 128,
        num_test_tasks: int = 64,
        task_seed: int = 0,
        families: Sequence[str] | None = None,
        step_latency_s: float = 0.0,
        reset_latency_s: float = 0.0,
        latency_jitter: float = 0.0,
        fault_step_raise_prob: float = 0.0,
        fault_step_hang_prob: float = 0.0,
        fault_reset_raise_prob: float = 0.0,
        fault_reset_hang_prob: float = 0.0,
        fault_hang_s: float = 3600.0,
        fault_seed: int | None = 0,
    ):
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self._screen_size = (int(screen_size[0]), int(screen_size[1]))
        if self._screen_size[0] < 112 or self._screen_size[1] < 70:
            raise ValueError(f"screen_size must be at least (112, 70) for the widgets to fit, got {tuple(screen_size)}")
        self.observation = observation
        self.coords = coords
        self.model_image_size = tuple(int(v) for v in model_image_size) if model_image_size is not None else None
        model_frame(self._screen_size, coords, self.model_image_size)  # checks coords and sizes now
        self.max_steps = int(max_steps)
        self._splits = build_splits(int(task_seed), int(num_train_tasks), int(num_test_tasks), families)
        seed = None if fault_seed is None else int(fault_seed)
        self._latency = SimulatedLatency(step_latency_s, reset_latency_s, latency_jitter, seed)
        self._faults = FaultInjector(
            fault_step_raise_prob, fault_step_hang_prob, fault_reset_raise_prob, fault_reset_hang_prob, fault_hang_s, seed
        )
        self.layout = Layout(self._screen_size)
        self.renderer = Renderer(self._screen_size)
        self.expert = ScriptedExpert(self.layout)
        self._blank = np.zeros((self._screen_size[1], self._screen_size[0], 3), np.uint8)
        self._task: Task | None = None
        self._state: DeskState | None = None

    # -- GUIEnv protocol -----------------------------------------------------------------------

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._screen_size

    def tasks(self, split: str) -> list[Task]:
        """The tasks of split "train" or "test" (same task_seed -> identical tasks)."""
        if split not in self._splits:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return list(self._splits[split])

    def reset(self, task: Task) -> Observation:
        """Set `task` up (from its config, so tasks of another instance work too)."""
        check_task_config(task)
        self._latency.on_reset()
        self._faults.on_reset()
        board = tuple((label, slot) for label, slot in task.config.get("board", []))
        self._task = task
        self._state = initial_state(task.id, task.config["start"], board)
        return self._observe()

    def step(self, response_text: str) -> StepResult:
        """Parse and execute one model response. Malformed text costs a turn and is reported in
        info (action_valid=False, error=reason); it never raises."""
        task, state = self._require_episode()
        if state.done:
            info = {"action_valid": False, "error": "the episode is over; call reset(task)", "action": None,
                    "changed": False, "steps": state.steps, "ended_by": state.ended_by}  # fmt: skip
            return StepResult(self._observe(), True, info)
        self._latency.on_step()
        self._faults.on_step()
        before = state_hash(state)
        action, error = None, None
        try:
            action = parse_response(response_text, self._screen_size, self.coords, self.model_image_size)
        except ActionParseError as parse_error:
            error = parse_error.reason
        if action is not None and action.type not in DESKTOP_ACTIONS:
            error = f"'{action.type}' is not in MiniDesk's action space ({', '.join(DESKTOP_ACTIONS)})"
        if error is None and action is not None:
            apply_action(state, action, self.layout)
        state.steps += 1
        budget = task.max_steps or self.max_steps
        if not state.done and state.steps >= budget:
            state.done, state.ended_by = True, "budget"
        observation = self._observe()
        info: dict[str, Any] = {
            "action_valid": error is None,
            "error": error,
            "action": action,
            "changed": observation.state_hash != before,
            "steps": state.steps,
            "ended_by": state.ended_by,
        }
        return StepResult(observation, state.done, info)

    def evaluate(self) -> float:
        """The task score in [0, 1] read from the current state (see goals.task_score)."""
        task, state = self._require_episode()
        return task_score(task.config["goals"], task.feasible, state)

    def snapshot(self) -> MiniDeskSnapshot:
        """A copy of the whole episode state (step counter and done flag included)."""
        task, state = self._require_episode()
        return MiniDeskSnapshot(task, state.copy())

    def restore(self, state: Any) -> None:
        """Go back to a `snapshot()` (which stays reusable)."""
        if not isinstance(state, MiniDeskSnapshot):
            raise TypeError(f"restore() takes what MiniDeskEnv.snapshot() returned, got {type(state).__name__}")
        self._task, self._state = state.task, state.state.copy()

    def close(self) -> None:
        self._task, self._state = None, None

    # -- extras --------------------------------------------------------------------------------

    def expert_response(self, epsilon: float = 0.0, rng: random.Random | None = None, thought: str | None = None) -> str:
        """The scripted expert's UI-TARS response for the current state (see expert.py).

        `epsilon`: probability of a plausible mistake, drawn from `rng` (a random.Random, needed
        when epsilon > 0). `thought`: None -> "Action: ..." only; "short" -> a few words
        ("Click Save.") as the Thought.
        """
        if thought not in THOUGHTS:
            raise ValueError(f"thought must be one of {THOUGHTS}, got {thought!r}")
        task, state = self._require_episode()
        step = self.expert.act(task.config["goals"], task.feasible, state, epsilon, rng)
        text = step.thought if thought == "short" else None
        return action_to_response(step.action, self._screen_size, self.coords, self.model_image_size, text)

    def vocabulary(self) -> list[str]:
        """Every word (run of letters) of the instructions of both splits, the labels, the
        accessibility text and the expert's responses (short thoughts included), sorted. Numbers
        and punctuation are left to a tokenizer's character fallback."""
        texts = [task.instruction for split in self._splits.values() for task in split]
        texts += [_UI_WORDS, _RESPONSE_WORDS, " ".join(ROLES), " ".join(catalog.APPS)]
        texts += [" ".join(labels) for labels in catalog.BUTTON_APPS.values()]
        texts += list(catalog.MAIL_LINES) + list(catalog.DOCUMENT_LINES)
        for heading, items in catalog.EDITOR_MENUS.items():
            texts += [heading] + [f"{label} {keys} {' '.join(sub)}" for label, keys, sub in items]
        texts += [tab + " " + " ".join(boxes) for tab, boxes in catalog.SETTINGS_TABS.items()]
        texts += [" ".join(words) for words in catalog.FORM_VALUES.values()] + list(catalog.FORM_FIELDS) + ["Subscribe"]
        pools = (catalog.SEARCH_WORDS, catalog.SONGS, catalog.FILES, catalog.FOLDERS, catalog.BOARD_WORDS)
        texts += [" ".join(words) for words in pools + (catalog.IMPOSSIBLE_WORDS,)]
        return sorted({word for text in texts for word in re.findall(r"[A-Za-z]+", text)})

    @property
    def task(self) -> Task | None:
        return self._task

    @property
    def state(self) -> DeskState | None:
        """The live state (read it, do not mutate it; use snapshot() for a copy)."""
        return self._state

    # -- internals -----------------------------------------------------------------------------

    def _require_episode(self) -> tuple[Task, DeskState]:
        if self._task is None or self._state is None:
            raise RuntimeError("MiniDeskEnv: call reset(task) first (no episode is running).")
        return self._task, self._state

    def _observe(self) -> Observation:
        task, state = self._require_episode()
        widgets = self.layout.widgets(state)
        if self.observation == "a11y":
            screenshot = self._blank.copy()  # the protocol needs an array; this mode shows text only
        else:
            screenshot = self.renderer.render(state, widgets)
        a11y = a11y_text(widgets) if self.observation != "screenshot" else None
        return Observation(screenshot=screenshot, instruction=task.instruction, a11y=a11y, state_hash=state_hash(state))
