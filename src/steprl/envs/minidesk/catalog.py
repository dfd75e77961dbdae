"""The fixed content of MiniDesk's world: apps, their labels, menus, lists and word pools.

Everything here is constant data. Learnability is the design rule (a 0.6M-parameter policy trained
from scratch must map "instruction words + which screen is showing" to a place): every app keeps
each label at one fixed place, so a label named in an instruction always means the same pixels in
the same app. Only the Board app (the `find_button` family, difficulty 4) shuffles its layout.
Word pools are disjoint where a mix-up would make a task ambiguous: the words of infeasible tasks
never appear as a label anywhere.
"""

from __future__ import annotations

#: Apps in desktop-icon order, with their colour (title bar, icon, buttons). Bold, distinct colours
#: let a model that cannot read text still tell the screens apart.
APP_COLOURS: dict[str, tuple[int, int, int]] = {
    "Panel": (30, 80, 200),
    "Toolbox": (230, 120, 0),
    "Mail": (200, 30, 40),
    "Editor": (120, 40, 170),
    "Settings": (20, 140, 60),
    "Search": (0, 140, 150),
    "Music": (210, 50, 150),
    "Files": (130, 80, 30),
    "Contacts": (110, 120, 20),
    "Board": (90, 90, 90),
}
APPS = tuple(APP_COLOURS)
DESKTOP = "desktop"

PANEL_BUTTONS = ("OK", "Cancel", "Save", "Open", "Print", "Help", "Close", "Next", "Back", "Reset", "Start", "Stop")
TOOLBOX_BUTTONS = ("Cut", "Copy", "Paste", "Undo", "Redo", "Zoom", "Crop", "Rotate", "Erase")
MAIL_BUTTONS = ("Send", "Reply", "Forward", "Delete", "Archive", "Spam")
MAIL_LINES = ("Inbox", "From Alice: lunch today", "From Bob: weekly report", "From Carol: photos")
#: Apps whose only job is buttons: app -> labels (fixed places, see layout.py).
BUTTON_APPS: dict[str, tuple[str, ...]] = {"Panel": PANEL_BUTTONS, "Toolbox": TOOLBOX_BUTTONS, "Mail": MAIL_BUTTONS}

# Editor menus: heading -> items; an item is (label, shortcut or "", submenu items or ()).
MenuItem = tuple[str, str, tuple[str, ...]]
EDITOR_MENUS: dict[str, tuple[MenuItem, ...]] = {
    "File": (
        ("New", "ctrl n", ()),
        ("Open", "ctrl o", ()),
        ("Save", "ctrl s", ()),
        ("Print", "ctrl p", ()),
        ("Close", "ctrl w", ()),
        ("Export", "", ("PDF", "HTML", "Text")),
    ),
    "Edit": (
        ("Undo", "ctrl z", ()),
        ("Redo", "ctrl y", ()),
        ("Cut", "ctrl x", ()),
        ("Copy", "ctrl c", ()),
        ("Paste", "ctrl v", ()),
        ("Find", "ctrl f", ()),
    ),
    "Format": (
        ("Bold", "ctrl b", ()),
        ("Italic", "ctrl i", ()),
        ("Underline", "ctrl u", ()),
        ("Font", "", ("Serif", "Sans", "Mono")),
        ("Size", "", ("Small", "Medium", "Large")),
        ("Align", "", ("Left", "Center", "Right")),
    ),
    "View": (
        ("Ruler", "", ()),
        ("Grid", "", ()),
        ("Theme", "", ("Light", "Dark", "Contrast")),
    ),
}
DOCUMENT_LINES = ("Meeting notes", "Agenda: budget, travel, hiring", "Next meeting on Friday")


def menu_leaves() -> list[tuple[str, ...]]:
    """Every command path of the Editor menus, e.g. ("File", "Save"), ("Format", "Font", "Mono")."""
    paths = []
    for heading, items in EDITOR_MENUS.items():
        for label, _shortcut, submenu in items:
            if submenu:
                paths.extend((heading, label, sub) for sub in submenu)
            else:
                paths.append((heading, label))
    return paths


def shortcuts() -> dict[tuple[str, ...], str]:
    """Command path -> its keyboard shortcut ("ctrl s"), for the commands that have one."""
    return {
        (heading, label): shortcut
        for heading, items in EDITOR_MENUS.items()
        for label, shortcut, _submenu in items
        if shortcut
    }


SETTINGS_TABS: dict[str, tuple[str, ...]] = {
    "General": ("Autosave", "Updates", "Backup", "Sync", "Telemetry"),
    "Display": ("Dark", "Contrast", "Motion", "Zoom", "Night"),
    "Sound": ("Mute", "Chimes", "Alerts", "Voice", "Bass"),
}

SEARCH_WORDS = (
    "apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum",
    "river", "mountain", "forest", "ocean", "desert", "island", "valley", "garden", "castle", "bridge",
    "window", "planet", "comet", "tiger", "zebra", "panda", "koala", "eagle", "falcon", "dolphin",
    "piano", "guitar", "violin", "drum", "flute", "camera", "laptop", "pencil", "candle", "mirror",
)  # fmt: skip

#: The Music list, alphabetical; 7 rows are visible, a scroll moves 5 rows.
SONGS = (
    "Amber", "Aurora", "Autumn", "Breeze", "Cascade", "Cinder", "Dawn", "Delta", "Echo", "Ember",
    "Falls", "Frost", "Glacier", "Harbor", "Horizon", "Indigo", "Jasmine", "Lagoon", "Meadow", "Midnight",
    "Nova", "Orbit", "Prairie", "Quartz", "Raven", "Sierra", "Solstice", "Tundra", "Velvet", "Willow",
)  # fmt: skip
VISIBLE_ROWS = 7
SCROLL_ROWS = 5

FILES = ("report", "photo", "notes", "budget", "resume", "invoice")
FOLDERS = ("Documents", "Pictures", "Archive", "Trash")
HOME = "home"  # location of a file that sits in the file grid

FORM_FIELDS = ("Name", "City", "Job")
FORM_VALUES: dict[str, tuple[str, ...]] = {
    "Name": ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"),
    "City": ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Quito", "Berlin", "Madrid"),
    "Job": ("baker", "nurse", "pilot", "chef", "judge", "farmer", "tailor", "miner", "singer", "writer"),
}
MAX_FIELD_CHARS = 32  # typing beyond this is ignored (keeps fields on screen)

#: Board (find_button): 12 buttons with labels from this pool on 12 of 20 slots, per task.
BOARD_WORDS = (
    "Red", "Blue", "Green", "Yellow", "Purple", "Pink", "Brown", "Black", "White", "Gray", "Gold", "Silver",
    "Lion", "Wolf", "Bear", "Fox", "Owl", "Hawk", "Deer", "Frog", "Crab", "Seal", "Moth", "Swan",
)  # fmt: skip
BOARD_BUTTONS = 12
BOARD_SLOTS = 20  # 5 columns x 4 rows

#: Words of infeasible tasks: never a label, a file, a song or an app.
IMPOSSIBLE_WORDS = (
    "Launch", "Turbo", "Comic", "Calendar", "Weather", "Rocket",
    "Magic", "Laser", "Wizard", "Galaxy", "Photon", "Quantum",
)  # fmt: skip
