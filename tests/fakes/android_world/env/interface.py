"""Fake `android_world.env.interface`: State and an AsyncEnv over a tiny simulated phone.

The phone (1080x2400 logical pixels, like the Pixel 6 AndroidWorld uses) shows a Wi-Fi switch,
a text field and a scrollable list. Actions follow AndroidWorld's actuation rules where they
matter to an adapter: click / double_tap / long_press need an element index or a point;
input_text taps its target first (and fails without one), types, then presses Enter; answer
stores its text in `interaction_cache`; status is a no-op; open_app needs an app name.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from android_world.env import json_action
from android_world.env.representation_utils import BoundingBox, UIElement

SCREEN = (1080, 2400)
WIFI_SWITCH = BoundingBox(900, 1000, 300, 400)
TEXT_FIELD = BoundingBox(100, 980, 600, 700)
LIST = BoundingBox(0, 1080, 800, 2200)


@dataclasses.dataclass(frozen=True)
class State:
    pixels: np.ndarray
    forest: Any
    ui_elements: list


class AsyncEnv:
    """Marker base class, as in AndroidWorld (the adapter only uses the methods below)."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise TypeError(f"fake AsyncEnv: {message}")


class FakeAsyncAndroidEnv(AsyncEnv):
    def __init__(self, console_port: int, grpc_port: int):
        self.console_port, self.grpc_port = console_port, grpc_port
        self.launch_args: dict[str, Any] = {}
        self.interaction_cache = ""
        self.wifi_on = False
        self.field_focused = False
        self.field_text = ""
        self.enters = 0
        self.scroll_offset = 0
        self.swipes: list[str] = []
        self.current_app: str | None = None
        self.home = False
        self.backs = 0
        self.executed: list[json_action.JSONAction] = []
        self.state_requests: list[bool] = []
        self.resets: list[bool] = []
        self.tear_downs: list[str] = []
        self.closed = False

    # -- AsyncEnv API --------------------------------------------------------------------------

    @property
    def controller(self) -> "FakeAsyncAndroidEnv":
        return self

    @property
    def logical_screen_size(self) -> tuple[int, int]:
        return SCREEN

    @property
    def device_screen_size(self) -> tuple[int, int]:
        return SCREEN

    @property
    def foreground_activity_name(self) -> str:
        return self.current_app or "launcher"

    def reset(self, *, go_home: bool = False) -> State:
        _check(isinstance(go_home, bool), "go_home must be a bool")
        _check(not self.closed, "reset() after close()")
        self.resets.append(go_home)
        if go_home:
            self.home, self.current_app = True, None
        self.interaction_cache = ""
        return self._state()

    def get_state(self, *, wait_to_stabilize: bool = False) -> State:
        _check(isinstance(wait_to_stabilize, bool), "wait_to_stabilize must be a bool")
        _check(not self.closed, "get_state() after close()")
        self.state_requests.append(wait_to_stabilize)
        return self._state()

    def execute_action(self, action: json_action.JSONAction) -> None:
        _check(isinstance(action, json_action.JSONAction), f"execute_action takes a JSONAction, got {type(action).__name__}")
        _check(not self.closed, "execute_action() after close()")
        self.executed.append(action)
        kind = action.action_type
        if kind == json_action.ANSWER:
            self.interaction_cache = action.text or ""
        elif kind in (json_action.CLICK, json_action.DOUBLE_TAP, json_action.LONG_PRESS):
            self._tap(action, kind)
        elif kind == json_action.INPUT_TEXT:
            if not action.text:
                return  # AndroidWorld logs a warning and does nothing
            self._tap(action, json_action.CLICK)
            if self.field_focused:
                self.field_text += action.text
            self.enters += 1
        elif kind == json_action.KEYBOARD_ENTER:
            self.enters += 1
        elif kind == json_action.NAVIGATE_HOME:
            self.home, self.current_app = True, None
        elif kind == json_action.NAVIGATE_BACK:
            self.backs += 1
        elif kind == json_action.SCROLL:
            _check(action.direction in json_action.SCROLL_DIRECTIONS, "scroll needs a direction")
            self.scroll_offset += {"down": 1, "up": -1, "left": 0, "right": 0}[action.direction]
        elif kind == json_action.SWIPE:
            _check(action.direction in json_action.SCROLL_DIRECTIONS, "swipe needs a direction")
            self.swipes.append(action.direction)
        elif kind == json_action.OPEN_APP:
            if not action.app_name:
                raise ValueError("No app name provided")
            self.current_app, self.home = action.app_name, False
        elif kind == json_action.STATUS:
            _check(action.goal_status in ("complete", "infeasible"), f"unknown goal_status {action.goal_status!r}")

    def close(self) -> None:
        self.closed = True

    # -- simulation ----------------------------------------------------------------------------

    def ui_elements(self) -> list[UIElement]:
        return [
            UIElement(text="Wi-Fi", class_name="android.widget.Switch", bbox_pixels=WIFI_SWITCH, is_checked=self.wifi_on,
                      is_clickable=True, is_visible=True),  # fmt: skip
            UIElement(text=self.field_text, hint_text="Name", class_name="android.widget.EditText", bbox_pixels=TEXT_FIELD,
                      is_editable=True, is_focused=self.field_focused, is_visible=True),  # fmt: skip
            UIElement(class_name="android.widget.ListView", bbox_pixels=LIST, is_scrollable=True, is_visible=True),
        ]

    def _tap(self, action: json_action.JSONAction, kind: str) -> None:
        elements = self.ui_elements()
        if action.index is not None:
            if not 0 <= action.index < len(elements):
                raise ValueError(f"Invalid element index: {action.index}")
            x, y = (int(v) for v in elements[action.index].bbox_pixels.center)
        elif action.x is not None and action.y is not None:
            x, y = action.x, action.y
        else:
            raise ValueError(f"Invalid click action: {action}")
        _check(0 <= x < SCREEN[0] and 0 <= y < SCREEN[1], f"tap ({x}, {y}) is off the screen")
        self.field_focused = TEXT_FIELD.contains(x, y)
        if kind == json_action.CLICK and WIFI_SWITCH.contains(x, y):
            self.wifi_on = not self.wifi_on

    def _state(self) -> State:
        key = repr((self.wifi_on, self.field_focused, self.field_text, self.scroll_offset, self.current_app, self.home))
        shade = int(hashlib.sha1(key.encode()).hexdigest()[:2], 16)
        pixels = np.full((SCREEN[1], SCREEN[0], 3), shade, dtype=np.uint8)
        return State(pixels=pixels, forest={"fake": True}, ui_elements=self.ui_elements())
