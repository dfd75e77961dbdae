"""How MiniDesk reacts to an action: one function that mutates the state.

Rules, chosen to be simple and predictable (a policy has to learn them from pixels):
- an open dialog is modal: only its Yes/No buttons (or Esc) do anything;
- an open menu takes the next mouse action: a click on a menu heading or item acts on the menu,
  any other click or drag just closes the menus;
- a double click opens a desktop icon's app and acts like a single click anywhere else;
- `type` inserts into the focused field ("\\n" submits it); with no focused field it does nothing;
- hotkeys: Esc closes a dialog (as No), then menus, then drops the focus; the Editor's shortcuts
  run their command; Backspace / Enter edit / submit the focused field;
- scroll moves the Music list by `SCROLL_ROWS` rows (up / down; left / right do nothing);
- actions that hit nothing are valid and change nothing, like on a real desktop.
"""

from __future__ import annotations

from steprl.envs.minidesk.catalog import (
    BUTTON_APPS,
    DESKTOP,
    FORM_FIELDS,
    MAX_FIELD_CHARS,
    SCROLL_ROWS,
    SONGS,
    VISIBLE_ROWS,
    shortcuts,
)
from steprl.envs.minidesk.layout import LIST_RECT, Layout
from steprl.envs.minidesk.state import SEARCH_FIELD, SUBSCRIBE, DeskState, form_field
from steprl.envs.minidesk.widgets import Widget, hit_test
from steprl.types import Action

#: The UI-TARS computer action space MiniDesk executes; other action types are invalid here.
DESKTOP_ACTIONS = (
    "click", "left_double", "right_single", "drag", "hotkey", "type", "scroll", "wait", "finished", "call_user",
)  # fmt: skip

_SHORTCUTS = {frozenset(keys.split()): "/".join(path) for path, keys in shortcuts().items()}


def apply_action(state: DeskState, action: Action, layout: Layout) -> None:
    """Execute `action` (already parsed and of a type in DESKTOP_ACTIONS) on `state`."""
    kind = action.type
    if kind in ("click", "left_double"):
        assert action.point is not None
        _click(state, hit_test(layout.widgets(state), action.point), double=kind == "left_double")
    elif kind == "drag":
        _drag(state, action, layout)
    elif kind == "hotkey":
        _hotkey(state, frozenset((action.text or "").split()))
    elif kind == "type":
        _type(state, action.text or "")
    elif kind == "scroll":
        _scroll(state, action, layout)
    elif kind in ("finished", "call_user"):
        state.done = True
        state.ended_by = kind
        state.answer = action.text if kind == "finished" else None
    elif kind not in ("wait", "right_single"):
        raise ValueError(f"MiniDesk does not execute {kind!r} actions")


def open_app(state: DeskState, app: str) -> None:
    state.screen, state.icon, state.menu, state.focus, state.dialog = app, None, (), None, None


def _click(state: DeskState, widget: Widget | None, double: bool) -> None:
    if state.dialog is not None:
        if widget is not None and widget.id in ("dialog:Yes", "dialog:No"):
            if widget.id == "dialog:Yes":
                state.locations[state.dialog] = "Trash"
                state.file = None
            state.dialog = None
        return
    if state.menu and (widget is None or widget.role not in ("menu", "menu_item")):
        state.menu = ()
        return
    if widget is None or widget.role not in ("field", "clear"):
        state.focus = None
    if widget is None:
        state.icon = None
        return
    role, key = widget.role, widget.id.partition(":")[2]
    if role == "icon":
        if double:
            open_app(state, widget.label)
        else:
            state.icon = widget.label
    elif role == "close":
        open_app(state, DESKTOP)
    elif role == "button":
        _press(state, widget.label)
    elif role == "checkbox":
        state.checks[key] = not state.checks[key]
    elif role == "field":
        state.focus = key
    elif role == "clear":
        state.fields[key] = ""
        state.focus = key
    elif role == "tab":
        state.tab = widget.label
    elif role == "menu":
        state.menu = () if state.menu[:1] == (widget.label,) else (widget.label,)
    elif role == "menu_item":
        path = tuple(key.split("/"))
        if widget.extra == ">":
            state.menu = path
        else:
            state.command = (key, "menu")
            state.menu = ()
    elif role == "list_item":
        state.song = widget.label
    elif role == "file":
        state.file = widget.label


def _press(state: DeskState, label: str) -> None:
    """A button of the current app was clicked."""
    app = state.screen
    if app in BUTTON_APPS or app == "Board":
        state.pressed[app] = label
    elif app == "Settings" and label == "Apply":
        state.applied = {key: state.checks[key] for key in state.applied}
    elif app == "Search" and label == "Go":
        _submit(state, SEARCH_FIELD)
    elif app == "Music" and label == "Play":
        if state.song is not None:
            state.playing = state.song
    elif app == "Files" and label == "Delete":
        if state.file is not None:
            state.dialog = state.file
    elif app == "Contacts" and label == "Submit":
        _submit(state, form_field(FORM_FIELDS[0]))


def _submit(state: DeskState, field_id: str) -> None:
    """Enter in a field, or its app's submit button."""
    if field_id == SEARCH_FIELD:
        state.query = state.fields[SEARCH_FIELD]
    else:
        record = {name: state.fields[form_field(name)] for name in FORM_FIELDS}
        record["Subscribe"] = "yes" if state.checks[SUBSCRIBE] else "no"
        state.form = record


def _drag(state: DeskState, action: Action, layout: Layout) -> None:
    if state.dialog is not None:
        return
    if state.menu:
        state.menu = ()
        return
    assert action.point is not None and action.end_point is not None
    widgets = layout.widgets(state)
    source, target = hit_test(widgets, action.point), hit_test(widgets, action.end_point)
    if source is not None and target is not None and source.role == "file" and target.role == "folder":
        state.locations[source.label] = target.label
        if state.file == source.label:
            state.file = None


def _hotkey(state: DeskState, keys: frozenset[str]) -> None:
    if keys == {"esc"}:
        if state.dialog is not None:
            state.dialog = None
        elif state.menu:
            state.menu = ()
        else:
            state.focus = None
        return
    if state.dialog is not None:
        return
    if state.screen == "Editor" and keys in _SHORTCUTS:
        state.command = (_SHORTCUTS[keys], "hotkey")
        state.menu = ()
    elif state.focus is not None and keys == {"backspace"}:
        state.fields[state.focus] = state.fields[state.focus][:-1]
    elif state.focus is not None and keys == {"enter"}:
        _submit(state, state.focus)


def _type(state: DeskState, text: str) -> None:
    if state.dialog is not None or state.focus is None:
        return
    for char in text:
        if char == "\n":
            _submit(state, state.focus)
        elif char != "\r" and len(state.fields[state.focus]) < MAX_FIELD_CHARS:
            state.fields[state.focus] += char


def _scroll(state: DeskState, action: Action, layout: Layout) -> None:
    if state.screen != "Music" or state.menu or state.dialog is not None:
        return
    if action.point is not None:
        x0, y0, x1, y1 = layout.scale.rect(*LIST_RECT)
        if not (x0 <= action.point[0] < x1 and y0 <= action.point[1] < y1):
            return
    step = {"down": SCROLL_ROWS, "up": -SCROLL_ROWS}.get(action.direction or "", 0)
    state.offset = min(max(state.offset + step, 0), len(SONGS) - VISIBLE_ROWS)
