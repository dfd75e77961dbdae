"""Where everything is: the widget list of the current screen, computed from the state.

Positions are written for a 448x280 base screen and scaled to the env's screen size. Every app
keeps its widgets at fixed places (see catalog.py for why); only list rows move when the list is
scrolled, menus and dialogs appear on top when open, and the Board app reads its per-task layout
from the state. Widgets are listed bottom to top (the renderer draws them in this order and hit
testing takes the last one under the point).
"""

from __future__ import annotations

from dataclasses import dataclass

from steprl.envs.minidesk.catalog import (
    APPS,
    BUTTON_APPS,
    DESKTOP,
    DOCUMENT_LINES,
    EDITOR_MENUS,
    FILES,
    FOLDERS,
    FORM_FIELDS,
    HOME,
    MAIL_LINES,
    SETTINGS_TABS,
    SONGS,
    VISIBLE_ROWS,
)
from steprl.envs.minidesk.state import SEARCH_FIELD, SUBSCRIBE, DeskState, form_field, settings_key
from steprl.envs.minidesk.widgets import Rect, Widget

BASE_SIZE = (448, 280)

MENU_HEADINGS = {"File": (4, 52), "Edit": (56, 104), "Format": (108, 168), "View": (172, 220)}
MENU_TOP, MENU_ITEM_H, MENU_W = 40, 20, 128
TAB_SPANS = {"General": (8, 96), "Display": (100, 188), "Sound": (192, 280)}
LIST_RECT = (16, 28, 300, 256)  # Music list box: 7 rows of 32 px inside a 2 px border
ROW_H = 32


@dataclass(frozen=True)
class Scale:
    """Maps base (448x280) coordinates to screen pixels."""

    sx: float
    sy: float

    @classmethod
    def for_screen(cls, screen_size: tuple[int, int]) -> Scale:
        return cls(screen_size[0] / BASE_SIZE[0], screen_size[1] / BASE_SIZE[1])

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> Rect:
        return (round(x0 * self.sx), round(y0 * self.sy), round(x1 * self.sx), round(y1 * self.sy))


def list_row_rect(row: int) -> tuple[int, int, int, int]:
    """Base rect of visible row `row` (0..VISIBLE_ROWS-1) of the Music list."""
    x0, y0, x1, _ = LIST_RECT
    return (x0 + 2, y0 + 2 + row * ROW_H, x1 - 14, y0 + 2 + (row + 1) * ROW_H)


class Layout:
    """Builds the widgets of a screen; caches the parts that never change."""

    def __init__(self, screen_size: tuple[int, int]):
        self.scale = Scale.for_screen(screen_size)
        self._static: dict[str, list[Widget]] = {}

    def widgets(self, state: DeskState) -> list[Widget]:
        """All widgets of the screen `state` shows, bottom to top."""
        if state.screen == DESKTOP:
            return self._desktop(state)
        static = self._static.get(state.screen)
        if static is None:
            static = self._static[state.screen] = self._chrome(state.screen) + self._fixed(state.screen)
        return static + self._dynamic(state)

    # -- static parts --------------------------------------------------------------------------

    def _chrome(self, app: str) -> list[Widget]:
        r = self.scale.rect
        return [
            Widget("title", "title", app, r(0, 0, 424, 20), style=app, interactive=False),
            Widget("close", "close", "close", r(424, 0, 448, 20), style=app),
        ]

    def _fixed(self, app: str) -> list[Widget]:
        r = self.scale.rect
        if app in BUTTON_APPS:
            return self._button_app(app)
        if app == "Editor":
            widgets = [Widget("doc", "window", "Document", r(8, 44, 440, 256), interactive=False)]
            widgets += [
                Widget(f"line:{i}", "label", line, r(16, 52 + i * 20, 432, 70 + i * 20), style="doc", interactive=False)
                for i, line in enumerate(DOCUMENT_LINES)
            ]
            return widgets
        if app == "Settings":
            return [Widget("button:Apply", "button", "Apply", r(340, 222, 432, 252), style=app)]
        if app == "Search":
            return [
                Widget("label:Query", "label", "Query", r(16, 38, 120, 54), interactive=False),
                Widget("clear:" + SEARCH_FIELD, "clear", "x", r(334, 56, 360, 84)),
                Widget("button:Go", "button", "Go", r(368, 56, 432, 84), style=app),
            ]
        if app == "Music":
            return [Widget("button:Play", "button", "Play", r(320, 40, 432, 76), style=app)]
        if app == "Files":
            return [Widget("button:Delete", "button", "Delete", r(20, 234, 112, 256), style=app)]
        if app == "Contacts":
            widgets = []
            for i, name in enumerate(FORM_FIELDS):
                y0, y1 = 36 + i * 36, 60 + i * 36
                widgets.append(Widget(f"label:{name}", "label", name, r(16, y0, 86, y1), interactive=False))
                widgets.append(Widget("clear:" + form_field(name), "clear", "x", r(334, y0, 358, y1)))
            widgets.append(Widget("button:Submit", "button", "Submit", r(90, 186, 190, 216), style=app))
            return widgets
        if app == "Board":
            return []
        raise ValueError(f"MiniDesk has no app named {app!r}; apps: {', '.join(APPS)}")

    def _button_app(self, app: str) -> list[Widget]:
        r = self.scale.rect
        labels = BUTTON_APPS[app]
        widgets = []
        for i, label in enumerate(labels):
            if app == "Panel":
                x0, y0, w, h = 16 + (i % 4) * 106, 36 + (i // 4) * 60, 92, 44
            elif app == "Toolbox":
                x0, y0, w, h = 24 + (i % 3) * 140, 40 + (i // 3) * 70, 120, 50
            else:  # Mail: a toolbar above the inbox
                x0, y0, w, h = 8 + i * 72, 28, 66, 26
            widgets.append(Widget(f"button:{label}", "button", label, r(x0, y0, x0 + w, y0 + h), style=app))
        if app == "Mail":
            widgets += [
                Widget(f"line:{i}", "label", line, r(16, 70 + i * 24, 432, 90 + i * 24), interactive=False)
                for i, line in enumerate(MAIL_LINES)
            ]
        return widgets

    # -- parts that depend on the state --------------------------------------------------------

    def _status(self, text: str) -> Widget:
        return Widget("status", "status", text, self.scale.rect(0, 260, 448, 280), interactive=False)

    def _dynamic(self, state: DeskState) -> list[Widget]:
        app = state.screen
        if app in BUTTON_APPS:
            return [self._status(f"Last: {state.pressed.get(app, 'none')}")]
        builder = {
            "Board": self._board,
            "Editor": self._editor,
            "Settings": self._settings,
            "Search": self._search,
            "Music": self._music,
            "Files": self._files,
            "Contacts": self._contacts,
        }[app]
        return builder(state)

    def _desktop(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        widgets = []
        for i, app in enumerate(APPS):
            x0, y0 = 12 + (i % 5) * 86, 16 + (i // 5) * 72
            selected = "selected" if state.icon == app else ""
            widgets.append(Widget(f"icon:{app}", "icon", app, r(x0, y0, x0 + 72, y0 + 56), state=selected, style=app))
        widgets.append(Widget("taskbar", "label", "Desktop", r(0, 262, 448, 280), style="taskbar", interactive=False))
        return widgets

    def _board(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        widgets = []
        for label, slot in state.board:
            x0, y0 = 14 + (slot % 5) * 86, 32 + (slot // 5) * 56
            widgets.append(Widget(f"button:{label}", "button", label, r(x0, y0, x0 + 76, y0 + 44), style="Board"))
        return widgets + [self._status(f"Last: {state.pressed.get('Board', 'none')}")]

    def _editor(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        widgets = []
        for heading, (x0, x1) in MENU_HEADINGS.items():
            is_open = "open" if state.menu[:1] == (heading,) else ""
            widgets.append(Widget(f"menu:{heading}", "menu", heading, r(x0, 22, x1, 40), state=is_open))
        if state.command is None:
            widgets.append(self._status("Last: none"))
        else:
            path, via = state.command
            widgets.append(self._status(f"Last: {path.replace('/', ' > ')} ({via})"))
        # Open dropdowns, outermost first: the heading's, then each open submenu to its right.
        x0, y0 = MENU_HEADINGS[state.menu[0]][0] if state.menu else 0, MENU_TOP
        for depth in range(len(state.menu)):
            path = state.menu[: depth + 1]
            for j, (label, extra) in enumerate(menu_entries(path)):
                item_path = path + (label,)
                on_path = "open" if state.menu[: depth + 2] == item_path else ""
                rect = r(x0, y0 + j * MENU_ITEM_H, x0 + MENU_W, y0 + (j + 1) * MENU_ITEM_H)
                widgets.append(Widget("item:" + "/".join(item_path), "menu_item", label, rect, state=on_path, extra=extra))
            if depth + 1 < len(state.menu):  # the next dropdown opens beside its parent item
                labels = [label for label, _ in menu_entries(path)]
                y0 = y0 + labels.index(state.menu[depth + 1]) * MENU_ITEM_H
                x0 = x0 + MENU_W
        return widgets

    def _settings(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        widgets = []
        for tab, (x0, x1) in TAB_SPANS.items():
            active = "active" if state.tab == tab else ""
            widgets.append(Widget(f"tab:{tab}", "tab", tab, r(x0, 24, x1, 46), state=active, style="Settings"))
        for i, box in enumerate(SETTINGS_TABS[state.tab]):
            key = settings_key(state.tab, box)
            ticked = "checked" if state.checks[key] else "unchecked"
            widgets.append(Widget(f"check:{key}", "checkbox", box, r(24, 60 + i * 34, 224, 86 + i * 34), state=ticked))
        applied = all(state.checks[key] == value for key, value in state.applied.items())
        widgets.append(self._status("Applied" if applied else "Not applied"))
        return widgets

    def _field(self, state: DeskState, field_id: str, label: str, rect: Rect) -> Widget:
        focused = "focused" if state.focus == field_id else ""
        return Widget(f"field:{field_id}", "field", label, rect, state=focused, value=state.fields[field_id])

    def _search(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        result = f"Results for: {state.query}" if state.query is not None else "No search yet"
        return [
            self._field(state, SEARCH_FIELD, "Query", r(16, 56, 330, 84)),
            Widget("results", "label", result, r(16, 100, 432, 120), interactive=False),
        ]

    def _music(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        widgets = [
            Widget("list:Songs", "list", "Songs", r(*LIST_RECT), value=str(state.offset), interactive=False)
        ]
        for row in range(VISIBLE_ROWS):
            index = state.offset + row
            if index >= len(SONGS):
                break
            song = SONGS[index]
            flags = " ".join(f for f, on in (("selected", state.song == song), ("playing", state.playing == song)) if on)
            rect = r(*list_row_rect(row))
            widgets.append(Widget(f"row:{song}", "list_item", song, rect, state=flags, style=str(index % 2)))
        widgets.append(self._status(f"Playing: {state.playing or 'none'}"))
        return widgets

    def _files(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        widgets = []
        for i, name in enumerate(FILES):
            if state.locations[name] != HOME:
                continue
            x0, y0 = 20 + (i % 2) * 104, 34 + (i // 2) * 70
            selected = "selected" if state.file == name else ""
            widgets.append(Widget(f"file:{name}", "file", name, r(x0, y0, x0 + 92, y0 + 56), state=selected))
        for i, folder in enumerate(FOLDERS):
            count = sum(location == folder for location in state.locations.values())
            rect = r(248, 30 + i * 50, 432, 74 + i * 50)
            widgets.append(Widget(f"folder:{folder}", "folder", folder, rect, value=str(count) if count else ""))
        widgets.append(self._status(f"Selected: {state.file or 'none'}"))
        if state.dialog is not None:
            widgets += [
                Widget("dialog", "dialog", "Confirm", r(124, 90, 324, 190), value=f"Delete {state.dialog}?",
                       interactive=False),  # fmt: skip
                Widget("dialog:Yes", "button", "Yes", r(144, 150, 214, 178), style="dialog"),
                Widget("dialog:No", "button", "No", r(234, 150, 304, 178), style="dialog"),
            ]
        return widgets

    def _contacts(self, state: DeskState) -> list[Widget]:
        r = self.scale.rect
        widgets = [
            self._field(state, form_field(name), name, r(90, 36 + i * 36, 330, 60 + i * 36))
            for i, name in enumerate(FORM_FIELDS)
        ]
        ticked = "checked" if state.checks[SUBSCRIBE] else "unchecked"
        widgets.append(Widget(f"check:{SUBSCRIBE}", "checkbox", "Subscribe", r(90, 146, 250, 170), state=ticked))
        if state.form is None:
            status = "Not submitted"
        else:
            status = "Submitted: " + ", ".join(state.form[name] or "-" for name in (*FORM_FIELDS, "Subscribe"))
        widgets.append(self._status(status))
        return widgets


def menu_entries(path: tuple[str, ...]) -> list[tuple[str, str]]:
    """(label, extra) of the dropdown that `path` opens; extra is the shortcut, ">" for a submenu."""
    items = EDITOR_MENUS[path[0]]
    if len(path) == 1:
        return [(label, ">" if submenu else shortcut) for label, shortcut, submenu in items]
    for label, _shortcut, submenu in items:
        if label == path[1] and submenu and len(path) == 2:
            return [(sub, "") for sub in submenu]
    raise KeyError(f"no menu at {'/'.join(path)}")
