"""The on-screen elements of MiniDesk: one record per widget, hit testing, accessibility text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Rect = tuple[int, int, int, int]  # (x0, y0, x1, y1) in screen pixels, x1/y1 exclusive

#: Widget roles (also the first word of each accessibility line).
ROLES = (
    "window", "title", "close", "icon", "button", "checkbox", "field", "clear", "tab", "menu",
    "menu_item", "list", "list_item", "file", "folder", "dialog", "label", "status",
)  # fmt: skip


@dataclass(frozen=True)
class Widget:
    """One element of the current screen.

    `id` is unique on a screen and says what the element is ("button:Save", "field:Contacts.Name",
    "item:Format/Font"); dynamics and the expert address widgets by it. `state` holds flags such as
    "checked", "focused", "selected", "open", "active"; `value` the text of a field or the count of
    a folder; `extra` a menu item's shortcut or submenu marker. `style` picks the colour.
    """

    id: str
    role: str
    label: str
    rect: Rect
    state: str = ""
    value: str = ""
    extra: str = ""
    style: str = ""
    interactive: bool = True

    @property
    def center(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.rect
        return (x0 + x1 - 1) // 2, (y0 + y1 - 1) // 2

    def contains(self, point: tuple[int, int]) -> bool:
        x0, y0, x1, y1 = self.rect
        return x0 <= point[0] < x1 and y0 <= point[1] < y1

    def visual_key(self) -> tuple:
        """Everything that decides how this widget looks (the renderer's sprite cache key)."""
        x0, y0, x1, y1 = self.rect
        return (self.role, self.label, self.state, self.value, self.extra, self.style, x1 - x0, y1 - y0)


def hit_test(widgets: Sequence[Widget], point: tuple[int, int]) -> Widget | None:
    """The topmost interactive widget under `point` (widgets are listed bottom to top), or None."""
    for widget in reversed(widgets):
        if widget.interactive and widget.contains(point):
            return widget
    return None


def find(widgets: Sequence[Widget], widget_id: str) -> Widget | None:
    """The widget with id `widget_id`, or None when it is not on the screen."""
    for widget in widgets:
        if widget.id == widget_id:
            return widget
    return None


def a11y_line(widget: Widget) -> str:
    """One accessibility line: role, "label", states, text/shortcut when present, [x0,y0,x1,y1]."""
    parts = [widget.role, f'"{widget.label}"', widget.state or "-"]
    if widget.role == "field":
        parts.append(f'text="{widget.value}"')
    elif widget.value:
        parts.append(f"value={widget.value}")
    if widget.extra:
        parts.append(f'shortcut="{widget.extra}"' if widget.role == "menu_item" and widget.extra != ">" else "submenu")
    x0, y0, x1, y1 = widget.rect
    parts.append(f"[{x0},{y0},{x1},{y1}]")
    return " ".join(parts)


def a11y_text(widgets: Sequence[Widget]) -> str:
    """The accessibility text of a screen: one line per widget, bottom to top."""
    return "\n".join(a11y_line(widget) for widget in widgets)
