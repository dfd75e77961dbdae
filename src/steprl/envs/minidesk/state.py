"""The logical state of a MiniDesk episode: a plain record, cheap to copy and to hash.

Everything the screen shows and the evaluator reads is in `DeskState`; rendering and scoring are
functions of it. `state_hash` covers the logical state (not the step counter), so identical
states reached at different steps share a hash (GiGPO anchor states); it uses hashlib, so it is
the same in every process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from steprl.envs.minidesk.catalog import FILES, FORM_FIELDS, HOME, SETTINGS_TABS


def settings_key(tab: str, box: str) -> str:
    return f"Settings/{tab}/{box}"


SUBSCRIBE = "Contacts/Subscribe"
SEARCH_FIELD = "Search.query"


def form_field(name: str) -> str:
    return f"Contacts.{name}"


@dataclass
class DeskState:
    """What is on the desk now. Mutated in place by `dynamics.apply_action`."""

    task_id: str
    screen: str  # "desktop" or an app name
    board: tuple[tuple[str, int], ...] = ()  # Board app: (label, slot) of each button, per task
    icon: str | None = None  # selected desktop icon
    menu: tuple[str, ...] = ()  # open Editor menu path, e.g. ("Format", "Font")
    dialog: str | None = None  # Files: the file whose deletion awaits confirmation
    focus: str | None = None  # focused text field id
    fields: dict[str, str] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)  # checkbox id -> ticked (as shown)
    applied: dict[str, bool] = field(default_factory=dict)  # Settings values at the last Apply
    tab: str = "General"  # Settings: active tab
    pressed: dict[str, str] = field(default_factory=dict)  # app -> last button pressed
    command: tuple[str, str] | None = None  # Editor: ("Format/Font/Mono", "menu" | "hotkey")
    query: str | None = None  # Search: last submitted query
    offset: int = 0  # Music: first visible row
    song: str | None = None  # Music: selected row
    playing: str | None = None  # Music: song playing
    file: str | None = None  # Files: selected file
    locations: dict[str, str] = field(default_factory=dict)  # file -> "home" or a folder
    form: dict[str, str] | None = None  # Contacts: last submitted record
    steps: int = 0
    done: bool = False
    ended_by: str | None = None  # "finished" | "call_user" | "budget"
    answer: str | None = None  # content of finished(content=...)

    def copy(self) -> DeskState:
        """An independent copy (dicts copied; tuples and strings are immutable)."""
        clone = DeskState(**self.__dict__)
        clone.fields = dict(self.fields)
        clone.checks = dict(self.checks)
        clone.applied = dict(self.applied)
        clone.pressed = dict(self.pressed)
        clone.locations = dict(self.locations)
        clone.form = dict(self.form) if self.form is not None else None
        return clone

    def logical(self) -> dict:
        """The state without the step counter and the done flag (what the hash covers)."""
        data = dict(self.__dict__)
        del data["steps"], data["done"]
        if data["ended_by"] == "budget":  # running out of steps is not a choice of the agent
            data["ended_by"] = None
        return data


def initial_state(task_id: str, screen: str, board: tuple[tuple[str, int], ...] = ()) -> DeskState:
    """A fresh desk: every box unticked, every field empty, every file in the grid."""
    checks = {settings_key(tab, box): False for tab, boxes in SETTINGS_TABS.items() for box in boxes}
    applied = dict(checks)
    checks[SUBSCRIBE] = False
    fields = {SEARCH_FIELD: ""} | {form_field(name): "" for name in FORM_FIELDS}
    return DeskState(
        task_id=task_id,
        screen=screen,
        board=tuple((str(label), int(slot)) for label, slot in board),
        fields=fields,
        checks=checks,
        applied=applied,
        locations={name: HOME for name in FILES},
    )


def state_hash(state: DeskState) -> str:
    """sha256 of the canonical JSON of the logical state (16 hex digits)."""
    text = json.dumps(state.logical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
