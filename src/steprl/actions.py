"""UI-TARS response text <-> `Action`, and `Action` -> pyautogui code.

A UI-TARS response looks like ``Thought: ...\\nAction: click(start_box='(x,y)')``. This module
turns that text into an `Action` in absolute SCREEN pixels (see `steprl.types`), back into text
(for the scripted expert), and into the pyautogui code OSWorld executes.

Safety: model text is never passed to `eval`. The call is cut out of the text with a small
scanner, parsed with `ast.parse(mode="eval")` and accepted only if it is a plain call of a known
action name whose keyword arguments are literals; every number is parsed by a regular
expression. (The `ui-tars` package's own parser calls `eval()` on box strings, accepts
`os.system(...)` as an action named "system" and prints on failure, so only its `smart_resize`
is used here.)

Coordinate conventions (`coords`):
- ``"relative1000"`` (UI-TARS v1 / Qwen2-VL): a 0..1000 grid over the screen.
- ``"absolute"`` (UI-TARS-1.5 / Qwen2.5-VL): pixels of the image the model saw, `image_size`
  = (w, h); None means `ui_tars.action_parser.smart_resize` of the screen with its default
  min/max pixels (the identity for sides that are multiples of 28 inside that pixel range).
Model points must lie in [0, frame] on both axes; they are mapped to screen pixels by rounding
half up and clamping to the last pixel (so 1000 on the relative grid is the last column).

Other decisions:
- the action section starts at the first "Action:" whose text parses (so the word "Action:" inside
  the Thought is skipped); a trailing `# comment` after a call is ignored;
- a response with several actions (one call per line, blank lines between, as UI-TARS writes
  them): `parse_actions` returns all of them (at most `MAX_ACTIONS`, up to the first terminal
  one), `parse_response` the first; each benchmark chooses with `env.multi_action` (docs/benchmarks.md);
  the list ends at the first later line that is not a valid call (it and the rest are ignored);
- responses longer than `MAX_RESPONSE_CHARS` are rejected before any parsing; every malformed
  output (also numbers too large for a float) is an `ActionParseError`, never another exception;
- hotkey keys are lower case, space separated, with aliases mapped (arrowleft -> left, control ->
  ctrl, return -> enter, ...).
"""

from __future__ import annotations

import ast
import base64
import math
import re

from ui_tars.action_parser import smart_resize

from steprl.errors import ActionParseError
from steprl.types import Action

#: Responses longer than this are rejected outright (a runaway generation, or an attack on the
#: parser); UI-TARS responses with a long Thought stay well below it.
MAX_RESPONSE_CHARS = 8192
#: At most this many actions are read from one response (`parse_actions`); more is an error.
MAX_ACTIONS = 8

COORDS = ("absolute", "relative1000")
SCROLL_DIRECTIONS = ("up", "down", "left", "right")
RELATIVE_GRID = 1000

# Aliases of action names that the ui-tars package also accepts.
_NAME_ALIASES = {"left_single": "click", "select": "drag", "release": "keyup"}

# Argument names per action: (required, optional). Box arguments hold points.
_SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "click": (("start_box",), ()),
    "left_double": (("start_box",), ()),
    "right_single": (("start_box",), ()),
    "hover": (("start_box",), ()),
    "long_press": (("start_box",), ("time",)),
    "drag": (("start_box", "end_box"), ()),
    "hotkey": (("key",), ()),
    "press": (("key",), ()),
    "keydown": (("key",), ()),
    "keyup": (("key",), ()),
    "type": (("content",), ()),
    "scroll": ((), ("start_box", "end_box", "direction")),
    "wait": ((), ()),
    "finished": ((), ("content",)),
    "call_user": ((), ()),
    "open_app": (("app_name",), ()),
    "press_home": ((), ()),
    "press_back": ((), ()),
}
# Argument-name aliases (Doubao `point=`, older `hotkey=` / `press=` keys).
_ARG_ALIASES = {
    "point": "start_box",
    "start_point": "start_box",
    "end_point": "end_box",
    "hotkey": "key",
    "keys": "key",
}
_BOX_ARGS = ("start_box", "end_box")

_KEY_ALIASES = {
    "arrowleft": "left",
    "arrowright": "right",
    "arrowup": "up",
    "arrowdown": "down",
    "control": "ctrl",
    "return": "enter",
    "escape": "esc",
    "del": "delete",
    "spacebar": "space",
    "pgup": "pageup",
    "pgdn": "pagedown",
    "super": "win",
    "meta": "win",
    "cmd": "command",
    "option": "alt",
}
_NAMED_KEYS = frozenset(
    "ctrl alt shift win command fn enter esc tab space backspace delete insert home end pageup "
    "pagedown up down left right capslock numlock scrolllock printscreen pause".split()
    + [f"f{i}" for i in range(1, 25)]
)
_PRINTABLE_KEYS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789`-=[]\\;',./+*!@#$%^&()_{}|:\"<>?~")

_ACTION_HEAD = re.compile(r"(?:^|(?<=\s))Action[ \t]*:[ \t]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_END_TOKENS = re.compile(r"<\|[a-z_]+\|>|\[EOS\]|</s>")  # end-of-turn tokens a decoder may leave in
_COMMENT = re.compile(r"^\s*#.*$")  # a `# comment` the model echoes after a call
_CALL_START = re.compile(r"[A-Za-z_]\w*\s*\(")  # a line that starts like a call
_BOX_NOISE = re.compile(r"<\|box_start\|>|<\|box_end\|>|</?point>|</?bbox>|[()\[\]]")




# --------------------------------------------------------------------------------------------
# Coordinate frames
# --------------------------------------------------------------------------------------------


def model_frame(
    screen_size: tuple[int, int], coords: str = "absolute", image_size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """(w, h) of the frame the model's coordinates live in.

    relative1000 -> (1000, 1000); absolute -> `image_size`, or smart_resize(screen) when None.
    """
    width, height = _check_size(screen_size, "screen_size")
    if coords == "relative1000":
        return RELATIVE_GRID, RELATIVE_GRID
    if coords != "absolute":
        raise ValueError(f"coords must be one of {COORDS}, got {coords!r}")
    if image_size is not None:
        return _check_size(image_size, "image_size")
    resized_h, resized_w = smart_resize(height, width)
    return int(resized_w), int(resized_h)


def _check_size(size: tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (width, height), got {size!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return width, height


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def model_to_screen(
    point: tuple[float, float], screen_size: tuple[int, int], frame: tuple[int, int]
) -> tuple[int, int]:
    """Map a model point (validated to lie in [0, frame]) to screen pixels: x·W/w, rounded half
    up, clamped to the last pixel."""
    (width, height), (fw, fh) = screen_size, frame
    x = min(_round_half_up(point[0] * width / fw), width - 1)
    y = min(_round_half_up(point[1] * height / fh), height - 1)
    return x, y


def screen_to_model(point: tuple[int, int], screen_size: tuple[int, int], frame: tuple[int, int]) -> tuple[int, int]:
    """Inverse of `model_to_screen` up to rounding: x·w/W rounded half up."""
    (width, height), (fw, fh) = screen_size, frame
    return _round_half_up(point[0] * fw / width), _round_half_up(point[1] * fh / height)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def parse_response(
    text: str,
    screen_size: tuple[int, int],
    coords: str = "absolute",
    image_size: tuple[int, int] | None = None,
) -> Action:
    """Parse a UI-TARS response into an `Action` in absolute screen pixels (the first action when
    the response holds several; see `parse_actions`).

    Accepts "Thought: ... Action: ...", "Reflection: ... Action_Summary: ... Action: ...", a bare
    "Action: ..."; box tokens, ``<point>x y</point>``, points (x,y) and boxes (x1,y1,x2,y2) (their
    centre). Raises `ActionParseError` with the reason for anything else; never executes any part
    of the text.
    """
    return parse_actions(text, screen_size, coords, image_size)[0]


def parse_actions(
    text: str,
    screen_size: tuple[int, int],
    coords: str = "absolute",
    image_size: tuple[int, int] | None = None,
) -> list[Action]:
    """Every action of a UI-TARS response, in order (one call per line), up to the first terminal
    one (finished / call_user). Raises `ActionParseError` for a malformed response."""
    frame = model_frame(screen_size, coords, image_size)
    screen = _check_size(screen_size, "screen_size")
    if not isinstance(text, str):
        raise ActionParseError(f"the response must be a string, got {type(text).__name__}")
    if len(text) > MAX_RESPONSE_CHARS:
        raise ActionParseError(f"the response is {len(text)} characters long; the limit is {MAX_RESPONSE_CHARS}")
    if not text.strip():
        raise ActionParseError("the response is empty")
    heads = list(_ACTION_HEAD.finditer(text))
    if not heads:
        raise ActionParseError("no 'Action:' found in the response")
    first_error: ActionParseError | None = None
    for head in heads:  # "Action:" may also appear inside the Thought: the first one that parses wins
        try:
            return _parse_action_section(text[head.end() :], screen, frame)
        except ActionParseError as error:
            first_error = first_error or error
        except (OverflowError, RecursionError, MemoryError) as error:  # a number or nesting no float holds
            first_error = first_error or ActionParseError(f"the action holds a value out of range ({type(error).__name__})")
    assert first_error is not None
    raise first_error


def _parse_action_section(section: str, screen: tuple[int, int], frame: tuple[int, int]) -> list[Action]:
    """The calls after one "Action:" head: the first must parse; the section ends at the first
    later line that is not a valid call (that line and the rest are never run)."""
    rest = section.replace("<|box_start|>", "").replace("<|box_end|>", "").lstrip()
    actions = [_parse_one(rest, screen, frame)]
    rest = rest[actions[0][1] :]
    while not actions[-1][0].is_terminal:
        rest = rest.lstrip()
        if not _CALL_START.match(rest):
            break
        if len(actions) == MAX_ACTIONS:
            raise ActionParseError(f"more than {MAX_ACTIONS} actions in one response")
        try:
            actions.append(_parse_one(rest, screen, frame))
        except ActionParseError:
            break  # what follows the actions is not run (nor is anything after it)
        rest = rest[actions[-1][1] :]
    return [action for action, _ in actions]


def _parse_one(rest: str, screen: tuple[int, int], frame: tuple[int, int]) -> tuple[Action, int]:
    """The call at the start of `rest` -> (its Action, how many characters it used up to its line end)."""
    try:
        call_text = _first_call(rest)
        line, newline, _ = rest[len(call_text) :].partition("\n")
        trailing = _COMMENT.sub("", _END_TOKENS.sub("", line))
        if trailing.strip():  # "click(...).__class__" is not "one action, then maybe another"
            raise ActionParseError(f"unexpected text after the action: {_clip(trailing)}")
        used = len(call_text) + len(line) + len(newline)
        name, kwargs = _parse_call(call_text)
    except ActionParseError:
        # type() content with an unescaped quote inside ("it's") is common; repair it as the
        # ui-tars package does (the content runs to the quote before the closing bracket).
        repaired = _repair_type_call(rest)
        if repaired is None:
            raise
        call_text, used = repaired
        try:
            name, kwargs = _parse_call(call_text)
        except ActionParseError:
            raise ActionParseError(f"type() content has unbalanced quotes: {_clip(rest)}") from None
    return _build_action(name, kwargs, screen, frame), used


def _first_call(text: str) -> str:
    """Cut the first call expression `name(...)` out of `text` (quotes and brackets balanced)."""
    if not text:
        raise ActionParseError("nothing follows 'Action:'")
    depth, quote, i = 0, "", 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                raise ActionParseError(f"unbalanced brackets in action {_clip(text)}")
            if depth == 0:
                return text[: i + 1]
        elif depth == 0 and char == "\n":
            break
        i += 1
    if quote:
        raise ActionParseError(f"unbalanced quotes (truncated output?) in action {_clip(text)}")
    if depth > 0:
        raise ActionParseError(f"the action is truncated (unclosed bracket): {_clip(text)}")
    raise ActionParseError(f"the action is not a call like click(start_box='(x,y)'): {_clip(text)}")


_TYPE_CALL = re.compile(r"type\(\s*content\s*=\s*(['\"])(.*?)\1\s*\)[ \t]*(?:#[^\n]*)?(?:\n|$)", re.DOTALL)


def _repair_type_call(text: str) -> tuple[str, int] | None:
    """`type(content='it's')` -> (`type(content='it\\'s')`, characters used), or None when `text`
    is no type call."""
    match = _TYPE_CALL.match(text)
    if match is None:
        return None
    quote, body = match.group(1), match.group(2)
    body = re.sub(r"(?<!\\)" + quote, "\\\\" + quote, body)  # escape the bare inner quotes
    return f"type(content={quote}{body}{quote})", match.end()


def _clip(text: str, limit: int = 80) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse_call(call_text: str) -> tuple[str, dict[str, object]]:
    """Parse `name(key=literal, ...)` with `ast` and return (name, kwargs); reject everything else."""
    source = _escape_newlines_in_strings(call_text)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise ActionParseError(f"the action is not valid call syntax ({type(error).__name__}): {_clip(call_text)}") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise ActionParseError(f"the action must be a function call: {_clip(call_text)}")
    if isinstance(call.func, ast.Attribute):
        raise ActionParseError(f"attribute access is not an action: {_clip(call_text)}")
    if not isinstance(call.func, ast.Name):
        raise ActionParseError(f"the action must be a plain name followed by arguments: {_clip(call_text)}")
    name = _NAME_ALIASES.get(call.func.id, call.func.id)
    if name not in _SIGNATURES:
        raise ActionParseError(f"unknown action type '{call.func.id}'; known: {', '.join(_SIGNATURES)}")
    if call.args:
        raise ActionParseError(f"{name}() takes keyword arguments only, e.g. start_box='(x,y)'")
    kwargs: dict[str, object] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise ActionParseError(f"{name}(): '**' arguments are not accepted")
        key = _ARG_ALIASES.get(keyword.arg, keyword.arg)
        if key in kwargs:
            raise ActionParseError(f"{name}(): argument '{key}' given twice")
        kwargs[key] = _literal(keyword.value, name, key)
    return name, kwargs


def _escape_newlines_in_strings(text: str) -> str:
    """Write raw newlines inside quoted strings as \\n (models emit them in type content)."""
    out, quote, escaped = [], "", False
    for char in text:
        if quote and char in "\r\n":
            out.append("\\n" if char == "\n" else "\\r")
            escaped = False
            continue
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        out.append(char)
    return "".join(out)


def _literal(node: ast.expr, name: str, key: str) -> object:
    """The value of a literal argument: a string, a number, or a tuple/list of numbers."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_number_literal(element, name, key) for element in node.elts)
    if isinstance(node, ast.UnaryOp):
        return _number_literal(node, name, key)
    kinds = {
        ast.JoinedStr: "f-strings are",
        ast.Call: "nested calls are",
        ast.Attribute: "attribute access is",
        ast.Name: "bare names are",
        ast.Subscript: "subscripts are",
        ast.BinOp: "expressions are",
        ast.Lambda: "lambdas are",
    }
    what = kinds.get(type(node), f"{type(node).__name__} expressions are")
    raise ActionParseError(f"{name}(): argument '{key}' must be a quoted literal; {what} not accepted")


def _number_literal(node: ast.expr, name: str, key: str) -> float:
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return sign * float(node.value)
    raise ActionParseError(f"{name}(): argument '{key}' must hold numbers only")


def _build_action(name: str, kwargs: dict[str, object], screen: tuple[int, int], frame: tuple[int, int]) -> Action:
    """Check the arguments of action `name` and convert them into an `Action`."""
    required, optional = _SIGNATURES[name]
    unknown = sorted(set(kwargs) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join(required + optional) or "no arguments"
        raise ActionParseError(f"{name}(): unexpected argument(s) {', '.join(unknown)} (takes {allowed})")
    missing = [key for key in required if key not in kwargs]
    if missing:
        raise ActionParseError(f"{name}(): missing argument(s) {', '.join(missing)}")
    points = {key: _point(kwargs[key], name, key, screen, frame) for key in _BOX_ARGS if key in kwargs}

    if name == "scroll":
        return _scroll_action(kwargs, points)
    if name in ("hotkey", "press", "keydown", "keyup"):
        keys = normalize_keys(_string(kwargs["key"], name, "key"))
        if name != "hotkey" and len(keys.split()) != 1:
            raise ActionParseError(f"{name}() takes exactly one key, got '{keys}'")
        return Action(name, text=keys)
    if name == "type":
        content = _string(kwargs["content"], name, "content", allow_empty=True)
        if content == "":  # whitespace is real typing ("\n" presses Enter); nothing is not
            raise ActionParseError("type(): content is empty")
        return Action("type", text=content)
    if name == "finished":
        content = _string(kwargs.get("content", ""), name, "content", allow_empty=True)
        return Action("finished", text=content or None)
    if name == "open_app":
        return Action("open_app", text=_string(kwargs["app_name"], name, "app_name").strip())
    if name == "long_press" and "time" in kwargs:
        _time_value(kwargs["time"])
    return Action(name, point=points.get("start_box"), end_point=points.get("end_box"))


def _scroll_action(kwargs: dict[str, object], points: dict[str, tuple[int, int]]) -> Action:
    """scroll(start_box, direction) (computer) or the v1 mobile two-point scroll(start_box, end_box),
    whose direction is that of the content: a swipe toward the top (dy < 0) scrolls down."""
    direction = kwargs.get("direction")
    if direction is None:
        if "start_box" not in points or "end_box" not in points:
            raise ActionParseError("scroll(): missing argument direction")
        (x1, y1), (x2, y2) = points["start_box"], points["end_box"]
        dx, dy = x2 - x1, y2 - y1
        if dx == 0 and dy == 0:
            raise ActionParseError("scroll(): start_box and end_box are the same point; give a direction")
        if abs(dy) >= abs(dx):
            direction = "down" if dy < 0 else "up"
        else:
            direction = "right" if dx < 0 else "left"
    direction = _string(direction, "scroll", "direction").strip().lower()
    if direction not in SCROLL_DIRECTIONS:
        raise ActionParseError(f"scroll(): direction must be one of {', '.join(SCROLL_DIRECTIONS)}, got '{direction}'")
    return Action("scroll", point=points.get("start_box"), direction=direction)


def _string(value: object, name: str, key: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ActionParseError(f"{name}(): argument '{key}' must be a quoted string")
    if not allow_empty and not value.strip():
        raise ActionParseError(f"{name}(): argument '{key}' is empty")
    return value


def _time_value(value: object) -> float:
    seconds = _parse_numbers(value, "long_press", "time")
    if len(seconds) != 1 or seconds[0] < 0:
        raise ActionParseError("long_press(): time must be one non-negative number")
    return seconds[0]


def _parse_numbers(value: object, name: str, key: str) -> list[float]:
    """Numbers of a box string such as '(x,y)', '[x1, y1, x2, y2]', '<point>x y</point>'."""
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, tuple):
        return list(value)
    assert isinstance(value, str)  # _literal returns only str, numbers and tuples
    parts = [part for part in re.split(r"[,\s]+", _BOX_NOISE.sub(" ", value)) if part]
    numbers = []
    for part in parts:
        if not _NUMBER.fullmatch(part):
            raise ActionParseError(f"{name}(): argument '{key}' holds a non-numeric coordinate {part[:20]!r}")
        numbers.append(float(part))
    return numbers


def _point(value: object, name: str, key: str, screen: tuple[int, int], frame: tuple[int, int]) -> tuple[int, int]:
    """A box argument -> one screen point (the centre of a 4-number box), checked against the frame."""
    numbers = _parse_numbers(value, name, key)
    if len(numbers) == 2:
        x, y = numbers
    elif len(numbers) == 4:
        x, y = (numbers[0] + numbers[2]) / 2, (numbers[1] + numbers[3]) / 2
        if not all(0 <= v <= f for v, f in zip(numbers, frame * 2)):
            raise ActionParseError(f"{name}(): box {value!r} lies outside the screen (0..{frame[0]}, 0..{frame[1]})")
    else:
        raise ActionParseError(f"{name}(): argument '{key}' needs 2 numbers (x,y) or 4 (x1,y1,x2,y2), got {len(numbers)}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ActionParseError(f"{name}(): argument '{key}' is not a finite point")
    if not (0 <= x <= frame[0] and 0 <= y <= frame[1]):
        raise ActionParseError(f"{name}(): point ({x:g},{y:g}) lies outside the screen (0..{frame[0]}, 0..{frame[1]})")
    return model_to_screen((x, y), screen, frame)


def normalize_keys(keys: str) -> str:
    """Hotkey text -> lower-case key names, space separated: 'Ctrl+ArrowLeft' -> 'ctrl left'.

    Splits on spaces and on '+' between names (a lone '+' stays the plus key); maps aliases;
    rejects names pyautogui would not know.
    """
    names: list[str] = []
    for token in keys.lower().split():
        parts = [token] if token == "+" else [p for p in token.split("+") if p]
        for part in parts:
            part = _KEY_ALIASES.get(part, part)
            if part not in _NAMED_KEYS and part not in _PRINTABLE_KEYS:
                raise ActionParseError(f"unknown key '{part[:20]}' in '{keys[:40]}'")
            names.append(part)
    if not names:
        raise ActionParseError("no key given")
    return " ".join(names)


# --------------------------------------------------------------------------------------------
# Action -> text (the scripted expert) and Action -> pyautogui (OSWorld)
# --------------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    """A single-quoted literal that `ast` reads back as `text`."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"'{escaped}'"


def action_to_response(
    action: Action,
    screen_size: tuple[int, int],
    coords: str = "absolute",
    image_size: tuple[int, int] | None = None,
    thought: str | None = None,
) -> str:
    """UI-TARS text for `action` that `parse_response` maps back to it (up to coordinate
    rounding when the model frame is smaller than the screen). `thought=None` -> "Action: ..." only."""
    frame = model_frame(screen_size, coords, image_size)
    screen = _check_size(screen_size, "screen_size")

    def box(point: tuple[int, int] | None) -> str:
        if point is None:
            raise ValueError(f"{action.type} needs a point")
        x, y = screen_to_model(point, screen, frame)
        return f"'({x},{y})'"

    kind = action.type
    if kind in ("click", "left_double", "right_single", "hover", "long_press"):
        call = f"{kind}(start_box={box(action.point)})"
    elif kind == "drag":
        call = f"drag(start_box={box(action.point)}, end_box={box(action.end_point)})"
    elif kind in ("hotkey", "press", "keydown", "keyup"):
        call = f"{kind}(key={_quote(action.text or '')})"
    elif kind == "type":
        call = f"type(content={_quote(action.text or '')})"
    elif kind == "scroll":
        where = f"start_box={box(action.point)}, " if action.point is not None else ""
        call = f"scroll({where}direction='{action.direction}')"
    elif kind == "finished":
        call = f"finished(content={_quote(action.text)})" if action.text else "finished()"
    elif kind == "open_app":
        call = f"open_app(app_name={_quote(action.text or '')})"
    elif kind in ("wait", "call_user", "press_home", "press_back"):
        call = f"{kind}()"
    else:
        raise ValueError(f"unknown action type {kind!r}")
    prefix = f"Thought: {thought}\n" if thought is not None else ""
    return f"{prefix}Action: {call}"


def type_code(text: str, paste_keys: tuple[str, ...] = ("ctrl", "v")) -> str:
    """pyautogui code that types `text` exactly: each line is put on the clipboard and pasted
    (`paste_keys`), each newline presses Enter.

    Why not pyautogui.write: it types through key names, so `<` arrives as `>` on some layouts
    and letters outside ASCII are dropped. The line travels base64-encoded, so no quote,
    backslash or rewrite of the command on its way to the VM can change it (OSWorld rewrites
    `typewrite` calls that hold `<`). The VM needs `pyperclip` (OSWorld's images have it).
    """
    lines = text.replace("\r\n", "\n").split("\n")
    code = ["import base64, pyperclip"]
    for index, line in enumerate(lines):
        if index > 0:
            code.append("pyautogui.press('enter')")
        if line:
            encoded = base64.b64encode(line.encode("utf-8")).decode("ascii")
            code.append(f"pyperclip.copy(base64.b64decode('{encoded}').decode('utf-8'))")
            code.append(f"pyautogui.hotkey({', '.join(repr(k) for k in paste_keys)})")
            code.append("time.sleep(0.1)")
    return "\n".join(code)


def _pyautogui_keys(keys: str) -> list[str]:
    return keys.split()


def action_to_pyautogui(action: Action, paste_keys: tuple[str, ...] = ("ctrl", "v")) -> str:
    """pyautogui code for `action` (absolute screen pixels), or OSWorld's special strings:
    wait -> "WAIT", finished -> "DONE", call_user -> "FAIL".

    type() pastes through the clipboard (`type_code`), so every character arrives as written;
    left/right scroll use pyautogui.hscroll; press() taps the key (the ui-tars package maps it to
    keyDown). Mobile-only actions raise ActionParseError.
    """
    kind, point = action.type, action.point
    if kind == "wait":
        return "WAIT"
    if kind == "finished":
        return "DONE"
    if kind == "call_user":
        return "FAIL"
    if kind in ("click", "left_double", "right_single", "hover", "drag", "long_press") and point is None:
        raise ActionParseError(f"{kind} needs a point")
    if kind == "click":
        return f"pyautogui.click({point[0]}, {point[1]}, button='left')"
    if kind == "left_double":
        return f"pyautogui.doubleClick({point[0]}, {point[1]}, button='left')"
    if kind == "right_single":
        return f"pyautogui.click({point[0]}, {point[1]}, button='right')"
    if kind == "hover":
        return f"pyautogui.moveTo({point[0]}, {point[1]})"
    if kind == "long_press":
        return f"pyautogui.mouseDown({point[0]}, {point[1]})\ntime.sleep(1)\npyautogui.mouseUp({point[0]}, {point[1]})"
    if kind == "drag":
        if action.end_point is None:
            raise ActionParseError("drag needs an end point")
        (x1, y1), (x2, y2) = point, action.end_point
        return f"pyautogui.moveTo({x1}, {y1})\npyautogui.dragTo({x2}, {y2}, duration=0.5, button='left')"
    if kind == "hotkey":
        return f"pyautogui.hotkey({', '.join(repr(k) for k in _pyautogui_keys(action.text or ''))})"
    if kind in ("press", "keydown", "keyup"):
        function = {"press": "press", "keydown": "keyDown", "keyup": "keyUp"}[kind]
        return f"pyautogui.{function}({(action.text or '')!r})"
    if kind == "type":
        return type_code(action.text or "", paste_keys)
    if kind == "scroll":
        where = f", x={point[0]}, y={point[1]}" if point is not None else ""
        amount = {"up": ("scroll", 5), "down": ("scroll", -5), "right": ("hscroll", 5), "left": ("hscroll", -5)}
        if action.direction not in amount:
            raise ActionParseError(f"scroll direction must be one of {', '.join(SCROLL_DIRECTIONS)}")
        function, clicks = amount[action.direction]
        return f"pyautogui.{function}({clicks}{where})"
    raise ActionParseError(f"'{kind}' is a mobile action with no pyautogui equivalent")
