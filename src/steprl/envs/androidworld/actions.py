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


#: How long a drag's swipe takes (ms): the finger moves between the model's two points.
DRAG_DURATION_MS = 500


def json_actions(action: Action, elements: Sequence[Any], last_tap: tuple[int, int] | None) -> list[dict[str, Any]]:
    """What a UI-TARS action does on the phone, as a list of steps (points in screen pixels;
    `elements` are the UI elements of the screen the model saw). A step is either JSONAction
    fields (run by AndroidWorld's execute_action) or an adb step the env runs through
    AndroidWorld's adb_utils: {"adb": "swipe", "start": (x, y), "end": (x, y), "duration_ms": ms}
    or {"adb": "type", "text": text}.

    click / left_double / long_press -> click / double_tap / long_press at (x, y);
    type(content) -> a tap on the focused editable field (else the last tapped point, else no
    tap: the keys go to whatever has focus), then the text typed as written: each "\\n" presses
    Enter and nothing else does (AndroidWorld's input_text always presses Enter, so it is not used);
    scroll(direction, point) -> a swipe inside the smallest scrollable element under the point, with
    AndroidWorld's scroll geometry (centre to the edge), on the element as OBSERVED (any index,
    0 included); no point, or no scrollable element there -> AndroidWorld's full-screen scroll;
    drag(start, end) -> a swipe from the model's start to its end point (DRAG_DURATION_MS);
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
        text = action.text or ""
        focused = next((e for e in elements if e.is_focused and e.is_editable and e.bbox_pixels is not None), None)
        target = _centre(focused) if focused is not None else last_tap
        tap = [{"action_type": "click", "x": target[0], "y": target[1]}] if target is not None else []
        return tap + [{"adb": "type", "text": text}]
    if kind == "scroll":
        if point is not None:
            under = [e for e in elements if e.is_scrollable and _contains(e, point)]
            if under:
                return [_scroll_swipe(min(under, key=_area), action.direction)]
        return [{"action_type": "scroll", "direction": action.direction}]
    if kind == "drag":
        if point is None or action.end_point is None:
            raise UnsupportedAction("drag needs a start and an end point")
        if point == action.end_point:
            raise UnsupportedAction("drag start and end are the same point")
        return [{"adb": "swipe", "start": point, "end": action.end_point, "duration_ms": DRAG_DURATION_MS}]
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


def _scroll_swipe(element: Any, direction: str | None) -> dict[str, Any]:
    """AndroidWorld's scroll inside one element's box: from its centre to the edge the content
    comes from ("down" shows what is below: the finger moves up)."""
    box = element.bbox_pixels
    x_min, y_min, x_max, y_max = int(max(box.x_min, 0)), int(max(box.y_min, 0)), int(box.x_max), int(box.y_max)
    centre = ((x_min + x_max) // 2, (y_min + y_max) // 2)
    end = {"down": (centre[0], y_min), "up": (centre[0], y_max), "right": (x_min, centre[1]), "left": (x_max, centre[1])}
    if direction not in end:
        raise UnsupportedAction(f"scroll direction must be one of up, down, left, right, got {direction!r}")
    return {"adb": "swipe", "start": centre, "end": end[direction], "duration_ms": None}


def elements_text(elements: Sequence[Any]) -> str:
    """UI elements as accessibility text, one per line: index, class, text, state, box centre."""
    lines = []
    for index, e in enumerate(elements):
        label = e.text or e.content_description or e.hint_text or ""
        flags = [name for name in ("checked", "focused", "editable", "scrollable") if getattr(e, f"is_{name}", None)]
        where = f" at {_centre(e)}" if e.bbox_pixels is not None else ""
        lines.append(f"{index}: {(e.class_name or '').rsplit('.', 1)[-1]} '{label}'{where}" + (f" [{' '.join(flags)}]" if flags else ""))
    return "\n".join(lines)
