"""Fake `android_world.env.interface`: State and an AsyncEnv over a tiny simulated phone, driven
through AndroidWorld's REAL actuation code.

`execute_action` does what AndroidWorld's AsyncAndroidEnv.execute_action does: answer / status
are handled here, every other JSONAction goes to the real `actuation.execute_adb_action` with a
fresh element list, and the real `adb_utils` turn it into AdbRequests. Only the device is
simulated: `PhoneController.execute_adb_call` answers each AdbRequest (tap, press_button,
input_text, start_activity, generic `input swipe`) on a phone of 1080x2400 logical pixels (AndroidWorld's Pixel 6)
that shows a Wi-Fi switch, a text field and two scrollable lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import numpy as np
from android_env.proto import adb_pb2

from android_world.env import actuation, json_action
from android_world.env.representation_utils import BoundingBox, UIElement

SCREEN = (1080, 2400)
LIST = BoundingBox(0, 1080, 800, 2200)  # element 0: a scrollable list (index 0 matters)
WIFI_SWITCH = BoundingBox(900, 1000, 300, 400)
TEXT_FIELD = BoundingBox(100, 980, 600, 700)
SIDE_LIST = BoundingBox(600, 1000, 1000, 1800)  # a smaller scrollable list inside LIST


def _inside(box: BoundingBox, x: float, y: float) -> bool:
    return box.x_min <= x <= box.x_max and box.y_min <= y <= box.y_max


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


class PhoneController:
    """The device under AndroidWorld's adb_utils: records every AdbRequest and simulates it."""

    def __init__(self) -> None:
        self.requests: list[adb_pb2.AdbRequest] = []
        self.wifi_on = False
        self.field_focused = False
        self.field_text = ""
        self.enters = 0
        self.home = False
        self.backs = 0
        self.swipes: list[tuple[int, int, int, int]] = []
        self.launched: list[list[str]] = []
        self.elements_changed = False  # a list that re-orders itself after the screenshot

    def execute_adb_call(self, request: adb_pb2.AdbRequest) -> adb_pb2.AdbResponse:
        self.requests.append(request)
        kind = request.WhichOneof("command")
        if kind == "tap":
            self.tap(request.tap.x, request.tap.y)
        elif kind == "press_button":
            button = request.press_button.button
            if button == adb_pb2.AdbRequest.PressButton.ENTER:
                self.enters += 1
            elif button == adb_pb2.AdbRequest.PressButton.HOME:
                self.home = True
            elif button == adb_pb2.AdbRequest.PressButton.BACK:
                self.backs += 1
        elif kind == "input_text":
            _check(self.field_focused, "typing with no focused text field")
            # what `adb shell input text` does with adb_utils' escaping: %s is a space, \x is x
            self.field_text += re.sub(r"\\(.)", r"\1", request.input_text.text.replace("%s", " "))
        elif kind == "generic":
            args = list(request.generic.args)
            if args[:3] == ["shell", "input", "swipe"]:
                x1, y1, x2, y2 = (int(v) for v in args[3:7])
                for v, limit in ((x1, SCREEN[0]), (x2, SCREEN[0]), (y1, SCREEN[1]), (y2, SCREEN[1])):
                    _check(0 <= v <= limit, f"swipe point {v} off the screen")
                self.swipes.append((x1, y1, x2, y2))
            else:
                self.launched.append(args)
        elif kind == "start_activity":
            self.launched.append([request.start_activity.full_activity, *request.start_activity.extra_args])
        else:
            raise TypeError(f"fake phone: unexpected AdbRequest {kind}")
        return adb_pb2.AdbResponse(status=adb_pb2.AdbResponse.Status.OK)

    def tap(self, x: int, y: int) -> None:
        _check(0 <= x < SCREEN[0] and 0 <= y < SCREEN[1], f"tap ({x}, {y}) is off the screen")
        self.field_focused = _inside(TEXT_FIELD, x, y)
        if _inside(WIFI_SWITCH, x, y):
            self.wifi_on = not self.wifi_on

    def ui_elements(self) -> list[UIElement]:
        elements = [
            UIElement(class_name="android.widget.ListView", bbox_pixels=LIST, is_scrollable=True, is_visible=True),
            UIElement(text="Wi-Fi", class_name="android.widget.Switch", bbox_pixels=WIFI_SWITCH, is_checked=self.wifi_on,
                      is_clickable=True, is_visible=True),  # fmt: skip
            UIElement(text=self.field_text, hint_text="Name", class_name="android.widget.EditText", bbox_pixels=TEXT_FIELD,
                      is_editable=True, is_focused=self.field_focused, is_visible=True),  # fmt: skip
            UIElement(class_name="android.widget.ListView", bbox_pixels=SIDE_LIST, is_scrollable=True, is_visible=True),
        ]
        return elements[::-1] if self.elements_changed else elements


class FakeAsyncAndroidEnv(AsyncEnv):
    def __init__(self, console_port: int, grpc_port: int):
        self.console_port, self.grpc_port = console_port, grpc_port
        self.launch_args: dict[str, Any] = {}
        self.interaction_cache = ""
        self.phone = PhoneController()
        self.executed: list[json_action.JSONAction] = []
        self.state_requests: list[bool] = []
        self.resets: list[bool] = []
        self.tear_downs: list[str] = []
        self.closed = False

    # -- what the fake tasks read and set ---------------------------------------------------------

    @property
    def wifi_on(self) -> bool:
        return self.phone.wifi_on

    @wifi_on.setter
    def wifi_on(self, value: bool) -> None:
        self.phone.wifi_on = value

    @property
    def field_text(self) -> str:
        return self.phone.field_text

    @field_text.setter
    def field_text(self, value: str) -> None:
        self.phone.field_text = value

    @property
    def current_app(self) -> str | None:
        """The app the last `am start` / `monkey` request opened (its package name)."""
        for args in reversed(self.phone.launched):
            for arg in args:
                if "/" in arg or arg.count(".") >= 2:
                    return arg.split("/")[0]
        return None

    # -- AsyncEnv API --------------------------------------------------------------------------

    @property
    def controller(self) -> PhoneController:
        return self.phone

    @property
    def logical_screen_size(self) -> tuple[int, int]:
        return SCREEN

    @property
    def device_screen_size(self) -> tuple[int, int]:
        return SCREEN

    def reset(self, *, go_home: bool = False) -> State:
        _check(isinstance(go_home, bool), "go_home must be a bool")
        _check(not self.closed, "reset() after close()")
        self.resets.append(go_home)
        if go_home:
            self.phone.home = True
        self.interaction_cache = ""
        return self._state()

    def get_state(self, *, wait_to_stabilize: bool = False) -> State:
        _check(isinstance(wait_to_stabilize, bool), "wait_to_stabilize must be a bool")
        _check(not self.closed, "get_state() after close()")
        self.state_requests.append(wait_to_stabilize)
        return self._state()

    def execute_action(self, action: json_action.JSONAction) -> None:
        """AndroidWorld's AsyncAndroidEnv.execute_action, on the simulated phone."""
        _check(isinstance(action, json_action.JSONAction), f"execute_action takes a JSONAction, got {type(action).__name__}")
        _check(not self.closed, "execute_action() after close()")
        self.executed.append(action)
        if action.action_type == json_action.ANSWER:
            self.interaction_cache = action.text
            return
        if action.action_type == json_action.STATUS:
            return
        state = self.get_state(wait_to_stabilize=False)
        actuation.execute_adb_action(action, state.ui_elements, self.logical_screen_size, self.controller)

    def close(self) -> None:
        self.closed = True

    # -- simulation ----------------------------------------------------------------------------

    def ui_elements(self) -> list[UIElement]:
        return self.phone.ui_elements()

    def _state(self) -> State:
        p = self.phone
        key = repr((p.wifi_on, p.field_focused, p.field_text, len(p.swipes), p.home, len(p.launched)))
        shade = int(hashlib.sha1(key.encode()).hexdigest()[:2], 16)
        pixels = np.full((SCREEN[1], SCREEN[0], 3), shade, dtype=np.uint8)
        return State(pixels=pixels, forest={"fake": True}, ui_elements=self.ui_elements())
