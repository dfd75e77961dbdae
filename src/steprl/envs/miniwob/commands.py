"""UI-TARS `Action` -> MiniWoB++ action steps (pure: no browser, no miniwob import).

MiniWoB++ runs each action through Selenium in CSS pixels of the 160x210 task area, which is also
the screenshot the model sees, so points pass through unchanged. The mapping:

| UI-TARS                  | MiniWoB++ ActionTypes                                            |
|--------------------------|------------------------------------------------------------------|
| click / left_double      | CLICK_COORDS / DBLCLICK_COORDS                                   |
| hover                    | MOVE_COORDS                                                      |
| drag(start, end)         | MOUSEDOWN_COORDS at start, then MOUSEUP_COORDS at end            |
| type(content)            | TYPE_TEXT into the focused element; each "\\n" presses <Enter>   |
| hotkey / press(key)      | PRESS_KEY with MiniWoB's key syntax ("ctrl a" -> "C-a")          |
| scroll(up / down)        | SCROLL_UP_COORDS / SCROLL_DOWN_COORDS at the point (or the centre)|
| wait()                   | NONE, then a pause                                               |
| finished / call_user     | nothing: the episode ends (the page decides the score)           |

right_single, keydown/keyup, left/right scroll and the mobile actions have no MiniWoB++ equivalent:
they are invalid actions (they cost a turn; see `UnsupportedAction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steprl.types import Action

#: What the page's task area measures (miniwob.constants TASK_WIDTH x TASK_HEIGHT).
SCREEN_SIZE = (160, 210)

# Our normalised key names (steprl.actions.normalize_keys) -> MiniWoB's "<Name>" special keys.
_SPECIAL_KEYS = {
    "enter": "<Enter>",
    "esc": "<Escape>",
    "tab": "<Tab>",
    "space": "<Space>",
    "backspace": "<Backspace>",
    "delete": "<Delete>",
    "insert": "<Insert>",
    "home": "<Home>",
    "end": "<End>",
    "pageup": "<PageUp>",
    "pagedown": "<PageDown>",
    "up": "<ArrowUp>",
    "down": "<ArrowDown>",
    "left": "<ArrowLeft>",
    "right": "<ArrowRight>",
    "pause": "<Pause>",
    **{f"f{i}": f"<F{i}>" for i in range(1, 13)},
}
# Modifier prefixes, in the order miniwob.constants.ALL_POSSIBLE_KEYS composes them (A-C-M-S-).
_MODIFIERS = {"alt": "A-", "ctrl": "C-", "win": "M-", "command": "M-", "shift": "S-"}
_MODIFIER_ORDER = ("A-", "C-", "M-", "S-")
_PRINTABLE = frozenset(chr(code) for code in range(33, 127))


class UnsupportedAction(ValueError):
    """A parsed UI-TARS action that MiniWoB++ cannot execute; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MiniWoBCommand:
    """What one UI-TARS action becomes: MiniWoB steps `(ActionTypes name, fields)`, run in
    order, a pause after them (wait), and whether the agent ended the episode."""

    steps: tuple[tuple[str, dict], ...] = field(default_factory=tuple)
    pause_s: float = 0.0
    ends_episode: bool = False


def miniwob_key(keys: str) -> str:
    """Normalised key names -> MiniWoB's PRESS_KEY syntax: "ctrl a" -> "C-a", "shift tab" ->
    "S-<Tab>", "enter" -> "<Enter>". One non-modifier key at most (MiniWoB presses one key)."""
    prefixes, main = set(), []
    for name in keys.split():
        if name in _MODIFIERS:
            prefixes.add(_MODIFIERS[name])
        elif name in _SPECIAL_KEYS:
            main.append(_SPECIAL_KEYS[name])
        elif name in _PRINTABLE:
            main.append(name)
        else:
            raise UnsupportedAction(f"MiniWoB++ has no key '{name}'")
    if len(main) != 1:
        raise UnsupportedAction(f"MiniWoB++ presses exactly one key (plus modifiers), got '{keys}'")
    return "".join(p for p in _MODIFIER_ORDER if p in prefixes) + main[0]


def _coords(point: tuple[int, int]) -> dict:
    return {"coords": (float(point[0]), float(point[1]))}


def _typing_steps(content: str) -> tuple[tuple[str, dict], ...]:
    """TYPE_TEXT for each line, <Enter> for each newline ("a\\nb\\n" -> a, Enter, b, Enter)."""
    steps: list[tuple[str, dict]] = []
    lines = content.split("\n")
    for index, line in enumerate(lines):
        if line:
            steps.append(("TYPE_TEXT", {"text": line}))
        if index < len(lines) - 1:
            steps.append(("PRESS_KEY", {"key": "<Enter>"}))
    return tuple(steps)


def to_miniwob(action: Action, wait_s: float = 1.0) -> MiniWoBCommand:
    """The MiniWoB++ steps for `action` (screen pixels = task-area CSS pixels); raises
    `UnsupportedAction` for actions MiniWoB++ has no equivalent of."""
    kind, point = action.type, action.point
    centre = (SCREEN_SIZE[0] // 2, SCREEN_SIZE[1] // 2)
    if kind in ("finished", "call_user"):
        return MiniWoBCommand(ends_episode=True)
    if kind == "wait":
        return MiniWoBCommand((("NONE", {}),), pause_s=wait_s)
    pointed = {"click": "CLICK_COORDS", "left_double": "DBLCLICK_COORDS", "hover": "MOVE_COORDS"}
    if kind in pointed:
        if point is None:
            raise UnsupportedAction(f"{kind} needs a point")
        return MiniWoBCommand(((pointed[kind], _coords(point)),))
    if kind == "drag":
        if point is None or action.end_point is None:
            raise UnsupportedAction("drag needs a start and an end point")
        return MiniWoBCommand((("MOUSEDOWN_COORDS", _coords(point)), ("MOUSEUP_COORDS", _coords(action.end_point))))
    if kind == "type":
        return MiniWoBCommand(_typing_steps(action.text or ""))
    if kind in ("hotkey", "press"):
        return MiniWoBCommand((("PRESS_KEY", {"key": miniwob_key(action.text or "")}),))
    if kind == "scroll":
        if action.direction not in ("up", "down"):
            raise UnsupportedAction(f"MiniWoB++ scrolls up or down only, not {action.direction}")
        name = "SCROLL_UP_COORDS" if action.direction == "up" else "SCROLL_DOWN_COORDS"
        return MiniWoBCommand(((name, _coords(point or centre)),))
    raise UnsupportedAction(
        f"'{kind}' has no MiniWoB++ equivalent (supported: click, left_double, hover, drag, type, "
        "hotkey, press, scroll up/down, wait, finished, call_user)"
    )
