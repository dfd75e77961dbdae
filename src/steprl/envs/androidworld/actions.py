"""UI-TARS `Action` -> AndroidWorld JSONAction fields, and UI elements as text (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from steprl.types import Action


class UnsupportedAction(ValueError):
    """A parsed UI-TARS action with no AndroidWorld JSONAction equivalent; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _centre(element: Any) -> tuple[int, int]:
    x, y = element.bbox_pixels.center
    return int(x), int(y)


def _contains(element: Any, point: tuple[int, int]) -> bool:
    box = element.bbox_pixels
    return box is not None and box.x_min <= point[0] <= box.x_max and box.y_min <= point[1] <= box.y_max


def _area(element: Any) -> float:
    box = element.bbox_pixels
    return (box.x_max - box.x_min) * (box.y_max - box.y_min)


def json_actions(action: Action, elements: Sequence[Any], last_tap: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The JSONAction fields for a UI-TARS action (points in screen pixels; `elements` are the
    current screen's UI elements). Mapping (env-apis §3.5):

    click / left_double / long_press -> click / double_tap / long_press at (x, y);
    type(content) -> input_text at the focused editable field (else the last tapped point), text
    without its trailing newline (input_text always presses Enter); type("\\n") -> keyboard_enter;
    scroll(direction[, point]) -> scroll with direction, on the smallest scrollable element under
    the point (index) or the whole screen; drag(start, end) -> swipe in the finger's dominant
    direction (AndroidWorld's swipe is full-screen; vertical: "down" moves the finger down;
    horizontal: its "left" swipe moves the finger to the right, so a rightward drag is "left");
    open_app / press_home / press_back / wait -> open_app / navigate_home / navigate_back / wait;
    hotkey or press "enter" -> keyboard_enter; finished(content) -> answer (when content) then
    status complete; call_user -> status infeasible. Anything else raises UnsupportedAction.
    """
    kind, point = action.type, action.point
    if kind in ("click", "left_double", "long_press"):
        if point is None:
            raise UnsupportedAction(f"{kind} needs a point")
        name = {"click": "click", "left_double": "double_tap", "long_press": "long_press"}[kind]
        return [{"action_type": name, "x": point[0], "y": point[1]}]
    if kind == "type":
        text = (action.text or "").rstrip("\n")
        if not text:
            return [{"action_type": "keyboard_enter"}]
        focused = next((e for e in elements if e.is_focused and e.is_editable and e.bbox_pixels is not None), None)
        target = _centre(focused) if focused is not None else last_tap
        if target is None:
            raise UnsupportedAction("type() needs a text field: click the field first (AndroidWorld's input_text taps it)")
        return [{"action_type": "input_text", "text": text, "x": target[0], "y": target[1]}]
    if kind == "scroll":
        fields: dict[str, Any] = {"action_type": "scroll", "direction": action.direction}
        if point is not None:
            under = [i for i, e in enumerate(elements) if e.is_scrollable and _contains(e, point)]
            if under:
                fields["index"] = min(under, key=lambda i: _area(elements[i]))
        return [fields]
    if kind == "drag":
        if point is None or action.end_point is None:
            raise UnsupportedAction("drag needs a start and an end point")
        dx, dy = action.end_point[0] - point[0], action.end_point[1] - point[1]
        if dx == 0 and dy == 0:
            raise UnsupportedAction("drag start and end are the same point")
        direction = ("down" if dy > 0 else "up") if abs(dy) >= abs(dx) else ("left" if dx > 0 else "right")
        return [{"action_type": "swipe", "direction": direction}]
    if kind == "open_app":
        return [{"action_type": "open_app", "app_name": action.text}]
    simple = {"press_home": "navigate_home", "press_back": "navigate_back", "wait": "wait"}
    if kind in simple:
        return [{"action_type": simple[kind]}]
    if kind in ("hotkey", "press"):
        if action.text == "enter":
            return [{"action_type": "keyboard_enter"}]
        raise UnsupportedAction(f"AndroidWorld has no key '{action.text}' (only enter, as keyboard_enter)")
    if kind == "finished":
        answer = [{"action_type": "answer", "text": action.text}] if action.text else []
        return answer + [{"action_type": "status", "goal_status": "complete"}]
    if kind == "call_user":
        return [{"action_type": "status", "goal_status": "infeasible"}]
    raise UnsupportedAction(f"'{kind}' has no AndroidWorld equivalent (right clicks, hover and key up/down do not exist on Android)")


def elements_text(elements: Sequence[Any]) -> str:
    """UI elements as accessibility text, one per line: index, class, text, state, box centre."""
    lines = []
    for index, e in enumerate(elements):
        label = e.text or e.content_description or e.hint_text or ""
        flags = [name for name in ("checked", "focused", "editable", "scrollable") if getattr(e, f"is_{name}", None)]
        where = f" at {_centre(e)}" if e.bbox_pixels is not None else ""
        lines.append(f"{index}: {(e.class_name or '').rsplit('.', 1)[-1]} '{label}'{where}" + (f" [{' '.join(flags)}]" if flags else ""))
    return "\n".join(lines)
