"""Screenshots: bold, high-contrast colour blocks per widget kind, drawn with PIL.

Speed comes from caching: every widget is drawn once per distinct look (its `visual_key`) into a
small numpy "sprite", each screen's background once; a frame is a copy of the background with the
sprites pasted on in order (numpy slicing, no text drawing on the hot path).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from steprl.envs.minidesk.catalog import APP_COLOURS, DESKTOP, SONGS, VISIBLE_ROWS
from steprl.envs.minidesk.state import DeskState
from steprl.envs.minidesk.widgets import Widget

Colour = tuple[int, int, int]

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
DESKTOP_BG = (16, 40, 64)
FOCUS_BLUE = (0, 90, 255)
SELECT_ORANGE = (255, 150, 0)
MAX_SPRITES = 20_000  # the cache is cleared when it grows past this (typed text makes new looks)


def _tint(colour: Colour, amount: float = 0.82) -> Colour:
    """`colour` mixed with white (a light background of the app's colour)."""
    return tuple(int(c + (255 - c) * amount) for c in colour)  # type: ignore[return-value]


class Renderer:
    """Draws `DeskState` screens; one per env (the caches are per instance)."""

    def __init__(self, screen_size: tuple[int, int]):
        self.width, self.height = screen_size
        self.font = ImageFont.load_default(size=12)
        self._sprites: dict[tuple, np.ndarray] = {}
        self._backgrounds: dict[str, np.ndarray] = {}

    def background_colour(self, screen: str) -> Colour:
        return DESKTOP_BG if screen == DESKTOP else _tint(APP_COLOURS[screen])

    def render(self, state: DeskState, widgets: Sequence[Widget]) -> np.ndarray:
        """The (H, W, 3) uint8 screenshot of `state` (a new array)."""
        background = self._backgrounds.get(state.screen)
        if background is None:
            colour = self.background_colour(state.screen)
            background = np.empty((self.height, self.width, 3), np.uint8)
            background[:] = colour
            self._backgrounds[state.screen] = background
        frame = background.copy()
        bg = self.background_colour(state.screen)
        for widget in widgets:
            x0, y0, x1, y1 = widget.rect
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
            if x1 <= x0 or y1 <= y0:
                continue
            sprite = self._sprite(widget, bg)
            frame[y0:y1, x0:x1] = sprite[y0 - widget.rect[1] : y1 - widget.rect[1], x0 - widget.rect[0] : x1 - widget.rect[0]]
        return frame

    # -- sprites -------------------------------------------------------------------------------

    def _sprite(self, widget: Widget, bg: Colour) -> np.ndarray:
        key = widget.visual_key() + (bg,)
        sprite = self._sprites.get(key)
        if sprite is None:
            if len(self._sprites) >= MAX_SPRITES:
                self._sprites.clear()
            x0, y0, x1, y1 = widget.rect
            image = Image.new("RGB", (max(x1 - x0, 1), max(y1 - y0, 1)), bg)
            self._draw(ImageDraw.Draw(image), widget, image.size, bg)
            sprite = self._sprites[key] = np.asarray(image, dtype=np.uint8)
        return sprite

    def _text(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: Colour, anchor: str = "lm") -> None:
        draw.text(xy, text, fill=fill, font=self.font, anchor=anchor)

    def _draw(self, draw: ImageDraw.ImageDraw, w: Widget, size: tuple[int, int], bg: Colour) -> None:
        width, height = size
        full = (0, 0, width - 1, height - 1)
        mid = (width / 2, height / 2)
        colour = APP_COLOURS.get(w.style, (60, 60, 60))
        role = w.role
        if role == "title":
            draw.rectangle(full, fill=colour)
            self._text(draw, (6, height / 2), w.label, WHITE)
        elif role == "close":
            draw.rectangle(full, fill=(200, 0, 0))
            self._text(draw, mid, "X", WHITE, "mm")
        elif role == "icon":
            block = (width / 2 - 22, 2, width / 2 + 22, 36)
            if "selected" in w.state:
                draw.rectangle((block[0] - 3, 0, block[2] + 3, 39), fill=(255, 220, 0))
            draw.rectangle(block, fill=colour, outline=WHITE, width=2)
            self._text(draw, (width / 2, 47), w.label, WHITE, "mm")
        elif role == "button":
            fill = (60, 60, 60) if w.style == "dialog" else colour
            draw.rectangle(full, fill=fill, outline=BLACK, width=2)
            self._text(draw, mid, w.label, WHITE, "mm")
        elif role == "checkbox":
            draw.rectangle(full, fill=(248, 248, 248), outline=(120, 120, 120))
            box = (5, height / 2 - 8, 21, height / 2 + 8)
            if w.state == "checked":
                draw.rectangle(box, fill=(0, 160, 0), outline=BLACK, width=2)
                draw.line((8, height / 2, 12, height / 2 + 5, 19, height / 2 - 5), fill=WHITE, width=3)
            else:
                draw.rectangle(box, fill=WHITE, outline=BLACK, width=2)
            self._text(draw, (28, height / 2), w.label, BLACK)
        elif role == "field":
            focused = w.state == "focused"
            if focused:
                draw.rectangle(full, fill=(255, 250, 190), outline=FOCUS_BLUE, width=3)
            else:
                draw.rectangle(full, fill=WHITE, outline=BLACK, width=2)
            self._text(draw, (6, height / 2), w.value + ("|" if focused else ""), BLACK)
        elif role == "clear":
            draw.rectangle(full, fill=(220, 50, 50), outline=BLACK)
            self._text(draw, mid, "x", WHITE, "mm")
        elif role == "tab":
            active = w.state == "active"
            draw.rectangle(full, fill=colour if active else (190, 190, 190), outline=BLACK)
            self._text(draw, mid, w.label, WHITE if active else BLACK, "mm")
        elif role == "menu":
            draw.rectangle(full, fill=FOCUS_BLUE if w.state == "open" else (45, 45, 45))
            self._text(draw, mid, w.label, WHITE, "mm")
        elif role == "menu_item":
            on_path = w.state == "open"
            draw.rectangle(full, fill=FOCUS_BLUE if on_path else (250, 250, 250), outline=(150, 150, 150))
            ink = WHITE if on_path else BLACK
            self._text(draw, (6, height / 2), w.label, ink)
            if w.extra:
                self._text(draw, (width - 6, height / 2), w.extra, ink if on_path else (110, 110, 110), "rm")
        elif role == "list":
            draw.rectangle(full, fill=WHITE, outline=BLACK, width=2)
            draw.rectangle((width - 13, 2, width - 3, height - 3), fill=(200, 200, 200))
            self._scroll_thumb(draw, int(w.value or 0), width, height)
        elif role == "list_item":
            fill = SELECT_ORANGE if "selected" in w.state else ((232, 232, 255) if w.style == "0" else WHITE)
            draw.rectangle(full, fill=fill)
            if "playing" in w.state:
                draw.rectangle((0, 0, 7, height - 1), fill=(0, 170, 0))
            self._text(draw, (12, height / 2), w.label, BLACK)
        elif role == "file":
            selected = w.state == "selected"
            draw.rectangle(full, fill=(0, 150, 140), outline=SELECT_ORANGE if selected else BLACK, width=4 if selected else 2)
            self._text(draw, mid, w.label, WHITE, "mm")
        elif role == "folder":
            draw.rectangle(full, fill=(150, 100, 40), outline=BLACK, width=2)
            self._text(draw, (10, height / 2), w.label, WHITE)
            if w.value:
                self._text(draw, (width - 10, height / 2), w.value, (255, 230, 120), "rm")
        elif role == "dialog":
            draw.rectangle(full, fill=WHITE, outline=BLACK, width=2)
            draw.rectangle((0, 0, width - 1, 20), fill=(200, 0, 0))
            self._text(draw, (8, 10), w.label, WHITE)
            self._text(draw, (width / 2, 38), w.value, BLACK, "mm")
        elif role == "status":
            draw.rectangle(full, fill=(35, 35, 35))
            self._text(draw, (6, height / 2), w.label, WHITE)
        elif role == "window":
            draw.rectangle(full, fill=WHITE, outline=(120, 120, 120))
        elif role == "label":
            if w.style == "taskbar":
                draw.rectangle(full, fill=(0, 0, 0))
                self._text(draw, (6, height / 2), w.label, WHITE)
            else:
                if w.style == "doc":  # a line of the Editor's white document
                    draw.rectangle(full, fill=WHITE)
                self._text(draw, (2, height / 2), w.label, BLACK)
        else:
            raise ValueError(f"no drawing for widget role {role!r}")

    def _scroll_thumb(self, draw: ImageDraw.ImageDraw, offset: int, width: int, height: int) -> None:
        track = height - 6
        thumb = max(track * VISIBLE_ROWS // len(SONGS), 8)
        top = 3 + (track - thumb) * offset // max(len(SONGS) - VISIBLE_ROWS, 1)
        draw.rectangle((width - 12, top, width - 4, top + thumb), fill=(70, 70, 70))
