"""A scripted MiniWoB++ expert: the next UI-TARS action from the page's DOM and task fields.

It reads what MiniWoB++ reports with every observation (the utterance's `fields` and the visible
DOM elements with their boxes, values and focus/tampered flags) and returns the next `Action` in
screen pixels, the way a person would act on the screenshot: click a field, type into it, click
Submit. It is stateless (the DOM says what is done already), so it can take over mid-episode. It
exists for warm-start demonstrations and tests; `EXPERT_TASKS` lists the tasks it solves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steprl.envs.miniwob.commands import SCREEN_SIZE
from steprl.types import Action


@dataclass(frozen=True)
class Element:
    """One visible DOM element as MiniWoB++ reports it (positions in task-area CSS pixels)."""

    ref: int
    parent: int
    tag: str
    text: str
    value: str
    id: str
    classes: str
    left: float
    top: float
    width: float
    height: float
    focused: bool = False
    tampered: bool = False

    @property
    def centre(self) -> tuple[int, int]:
        """The pixel at the middle of the element's box, kept on screen."""
        x = min(max(int(math.floor(self.left + self.width / 2)), 0), SCREEN_SIZE[0] - 1)
        y = min(max(int(math.floor(self.top + self.height / 2)), 0), SCREEN_SIZE[1] - 1)
        return x, y

    def has_class(self, name: str) -> bool:
        return name in self.classes.split()


def _scalar(value: Any) -> float:
    """MiniWoB stores numbers as 1-element arrays; accept plain numbers too."""
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def elements_from_dom(dom_elements: Sequence[Mapping[str, Any]]) -> list[Element]:
    """MiniWoB's observation["dom_elements"] (dicts with array fields) -> `Element`s."""
    elements = []
    for raw in dom_elements:
        flags = [int(v) for v in raw.get("flags", (0, 0, 0, 0))]
        elements.append(
            Element(
                ref=int(raw["ref"]),
                parent=int(raw["parent"]),
                tag=str(raw["tag"]),
                text=str(raw.get("text") or ""),
                value=str(raw.get("value") or ""),
                id=str(raw.get("id") or ""),
                classes=str(raw.get("classes") or ""),
                left=_scalar(raw["left"]),
                top=_scalar(raw["top"]),
                width=_scalar(raw["width"]),
                height=_scalar(raw["height"]),
                focused=bool(flags[0]) if flags else False,
                tampered=bool(flags[1]) if len(flags) > 1 else False,
            )
        )
    return elements


class Page:
    """Look-ups over one observation's elements (children, label text, buttons by text)."""

    def __init__(self, elements: Sequence[Element]):
        self.elements = list(elements)

    def children(self, element: Element) -> list[Element]:
        return [e for e in self.elements if e.parent == element.ref]

    def label_text(self, element: Element) -> str:
        """The text of an element: its own, or that of its text children (MiniWoB's "t" nodes)."""
        own = element.text.strip()
        return own or " ".join(c.text.strip() for c in self.children(element) if c.tag == "t").strip()

    def find(self, predicate: Callable[[Element], bool]) -> Element | None:
        return next((e for e in self.elements if predicate(e)), None)

    def with_tag(self, *tags: str) -> list[Element]:
        return [e for e in self.elements if e.tag in tags]

    def button(self, text: str) -> Element | None:
        return self.find(lambda e: e.tag == "button" and e.text.strip() == text)

    def tabs(self) -> list[Element]:
        """The tab headers of a jQuery-UI tab widget."""
        return [e for e in self.elements if e.has_class("ui-tabs-anchor")]

    def input_in_label(self, text: str, kind: str) -> Element | None:
        """The <input type=kind> inside the <label> whose text is `text` (checkbox/radio lists)."""
        for label in self.with_tag("label"):
            if self.label_text(label) == text:
                box = next((c for c in self.children(label) if c.tag == f"input_{kind}"), None)
                if box is not None:
                    return box
        return None


def click(element: Element) -> Action:
    return Action("click", point=element.centre)


def click_uncovered(target: Element, covers: Sequence[Element]) -> Action | None:
    """Click a pixel of `target` that none of `covers` (elements drawn over it) hides: the
    centre if it is free, else the free pixel of a 5x5 grid over the box nearest to it."""
    def free(x: int, y: int) -> bool:
        return not any(c.left <= x < c.left + c.width and c.top <= y < c.top + c.height for c in covers)

    cx, cy = target.centre
    grid = [(int(target.left + target.width * (i + 0.5) / 5), int(target.top + target.height * (j + 0.5) / 5))
            for i in range(5) for j in range(5)]  # fmt: skip
    spots = sorted([(cx, cy)] + grid, key=lambda p: (p[0] - cx) ** 2 + (p[1] - cy) ** 2)
    point = next((p for p in spots if free(*p) and 0 <= p[0] < SCREEN_SIZE[0] and 0 <= p[1] < SCREEN_SIZE[1]), None)
    return Action("click", point=point) if point is not None else None


def fill(field: Element, value: str) -> Action | None:
    """One step toward `field` holding `value`: focus it, delete a wrong tail, type the rest.
    None when it already holds `value`."""
    if field.value == value:
        return None
    if not field.focused:
        return click(field)
    if value.startswith(field.value):
        return Action("type", text=value[len(field.value) :])
    return Action("press", text="backspace")


def fill_then_submit(pairs: Sequence[tuple[Element | None, str]], submit: Element | None) -> Action | None:
    """Fill each (field, value) in order, then click `submit`."""
    for field_element, value in pairs:
        if field_element is None:
            return None
        step = fill(field_element, value)
        if step is not None:
            return step
    return click(submit) if submit is not None else None


# ------------------------------------------------------------------------------------ task plans
def _click_test(page: Page, fields: Mapping[str, str]) -> Action | None:
    target = page.find(lambda e: e.tag == "button")
    return click(target) if target else None


def _click_button_text(page: Page, fields: Mapping[str, str]) -> Action | None:
    target = page.button(fields.get("target", ""))
    if target is None:
        return None
    later = page.elements[page.elements.index(target) + 1 :]  # drawn on top (click-test-2 overlaps them)
    return click_uncovered(target, [e for e in later if e.tag == "button"])


def _click_link(page: Page, fields: Mapping[str, str]) -> Action | None:
    target = page.find(lambda e: e.has_class("alink") and e.text.strip() == fields.get("target"))
    return click(target) if target else None


def _focus_text(page: Page, fields: Mapping[str, str]) -> Action | None:
    boxes = page.with_tag("input_text")
    index = int(fields.get("target", "1")) - 1
    return click(boxes[index]) if 0 <= index < len(boxes) else None


def _dialog_close(page: Page) -> Element | None:
    return page.find(lambda e: e.tag == "button" and e.has_class("ui-dialog-titlebar-close"))


def _click_dialog(page: Page, fields: Mapping[str, str]) -> Action | None:
    close = _dialog_close(page)
    return click(close) if close else None


def _click_dialog_2(page: Page, fields: Mapping[str, str]) -> Action | None:
    target = fields.get("target", "")
    button = _dialog_close(page) if target.lower() == "x" else page.button(target)
    return click(button) if button else None


def _click_option(page: Page, fields: Mapping[str, str]) -> Action | None:
    radio = page.input_in_label(fields.get("target", ""), "radio")
    if radio is None:
        return None
    return click(radio) if radio.value != "True" else _submit(page)


def _submit(page: Page) -> Action | None:
    button = page.button("Submit")
    return click(button) if button else None


def _click_button_sequence(page: Page, fields: Mapping[str, str]) -> Action | None:
    one, two = page.button("ONE"), page.button("TWO")
    if one is None or two is None:
        return None
    # the buttons may overlap; the later one in the DOM is drawn on top
    target, other = (two, one) if one.tampered else (one, two)
    on_top = [other] if page.elements.index(other) > page.elements.index(target) else []
    return click_uncovered(target, on_top)


def _click_checkboxes(page: Page, fields: Mapping[str, str]) -> Action | None:
    targets = {value for key, value in fields.items() if key.startswith("target")}
    for label in page.with_tag("label"):
        box = next((c for c in page.children(label) if c.tag == "input_checkbox"), None)
        if box is not None and (page.label_text(label) in targets) != (box.value == "True"):
            return click(box)
    return _submit(page)


def _enter_text(page: Page, fields: Mapping[str, str]) -> Action | None:
    return fill_then_submit([(page.find(lambda e: e.tag == "input_text"), fields.get("target", ""))], page.button("Submit"))


def _enter_text_2(page: Page, fields: Mapping[str, str]) -> Action | None:
    text = fields.get("text", "")
    text = text.lower() if fields.get("case") == "lower" else text.upper()
    return fill_then_submit([(page.find(lambda e: e.tag == "input_text"), text)], page.button("Submit"))


def _enter_password(page: Page, fields: Mapping[str, str]) -> Action | None:
    boxes = page.with_tag("input_password")
    target = fields.get("target", "")
    return fill_then_submit([(box, target) for box in boxes], page.button("Submit"))


def _login_user(page: Page, fields: Mapping[str, str]) -> Action | None:
    user = page.find(lambda e: e.id == "username")
    password = page.find(lambda e: e.id == "password")
    pairs = [(user, fields.get("username", "")), (password, fields.get("password", ""))]
    return fill_then_submit(pairs, page.button("Login"))


def _click_tab_2(page: Page, fields: Mapping[str, str]) -> Action | None:
    link = page.find(lambda e: e.has_class("alink") and e.text.strip() == fields.get("target"))
    if link is not None:
        return click(link)
    for anchor in page.tabs():
        parent = page.find(lambda e, ref=anchor.parent: e.ref == ref)
        if not anchor.tampered and not (parent is not None and parent.has_class("ui-tabs-active")):
            return click(anchor)
    return None


def _use_autocomplete(page: Page, fields: Mapping[str, str]) -> Action | None:
    start, end = fields.get("start", ""), fields.get("end", "")
    box = page.find(lambda e: e.tag == "input_text")
    if box is None:
        return None
    if box.value.startswith(start) and box.value.endswith(end) and box.value != start:
        return _submit(page)
    item = page.find(lambda e: e.has_class("ui-menu-item-wrapper") and e.text.startswith(start) and e.text.endswith(end))
    if item is not None:
        return click(item)
    if box.value == start:  # the suggestion menu is still on its way
        return Action("wait")
    return fill(box, start)


# multi-layouts names its fields differently per layout ("Director Name", "Released Date", ...).
_LAYOUT_WORDS = {"genre": ("genre",), "director": ("director",), "year": ("year", "date")}
_LAYOUT_SUBMITS = ("submit", "search", "go!", "go")


def _multi_layouts(page: Page, fields: Mapping[str, str]) -> Action | None:
    """The form comes in several layouts (labels beside, above or below the inputs, a table, ...):
    pair each field's label with the nearest free input, then press the Submit/Search/Go control."""
    inputs = [e for e in page.elements if e.tag.startswith("input_")]
    pairs: list[tuple[Element | None, str]] = []
    for label in page.elements:
        words = label.text.strip().lower()
        key = next((k for k, hints in _LAYOUT_WORDS.items() if any(h in words for h in hints)), None)
        if label.tag.startswith("input_") or key not in fields or not inputs:
            continue
        lx, ly = label.centre
        nearest = min(inputs, key=lambda box: (box.centre[0] - lx) ** 2 + (box.centre[1] - ly) ** 2)
        inputs.remove(nearest)
        pairs.append((nearest, fields[key]))
    if len(pairs) != len(fields):
        return None
    submits = [e for e in page.elements if e.text.strip().lower() in _LAYOUT_SUBMITS]
    return fill_then_submit(pairs, submits[-1] if submits else None)


_PLANS: dict[str, Callable[[Page, Mapping[str, str]], Action | None]] = {
    "click-test": _click_test,
    "click-test-2": _click_button_text,
    "click-button": _click_button_text,
    "click-link": _click_link,
    "focus-text": _focus_text,
    "focus-text-2": _focus_text,
    "click-dialog": _click_dialog,
    "click-dialog-2": _click_dialog_2,
    "click-option": _click_option,
    "click-button-sequence": _click_button_sequence,
    "click-checkboxes": _click_checkboxes,
    "enter-text": _enter_text,
    "enter-text-2": _enter_text_2,
    "enter-password": _enter_password,
    "login-user": _login_user,
    "click-tab-2": _click_tab_2,
    "use-autocomplete": _use_autocomplete,
    "multi-layouts": _multi_layouts,
}
#: Tasks the expert solves.
EXPERT_TASKS = tuple(sorted(_PLANS))


def expert_action(task_name: str, fields: Mapping[str, str], elements: Sequence[Element]) -> Action:
    """The expert's next action on task `task_name`; `wait()` when the page offers nothing to do
    yet (an animation, a menu still loading). Raises ValueError for a task it does not know."""
    plan = _PLANS.get(task_name)
    if plan is None:
        raise ValueError(f"No scripted MiniWoB++ expert for '{task_name}'; experts exist for: {', '.join(EXPERT_TASKS)}")
    return plan(Page(elements), fields) or Action("wait")
