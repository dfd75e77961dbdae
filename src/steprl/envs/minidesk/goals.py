"""Task goals: what each goal asks (its sentence) and how far the final state meets it (its score).

A task is a list of goals (usually one; the `desktop_chain` family has two) plus a start screen. A
goal is a plain dict, e.g. {"kind": "press", "app": "Panel", "label": "Save"}, so tasks pickle and
serialise as JSON. Scores are read from the final state only, like OSWorld's evaluators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from steprl.envs.minidesk.catalog import FILES, FORM_FIELDS, HOME, SETTINGS_TABS
from steprl.envs.minidesk.state import DeskState, settings_key

Goal = Mapping[str, Any]

GOAL_APPS = {
    "ticks": "Settings",
    "search": "Search",
    "menu": "Editor",
    "shortcut": "Editor",
    "play": "Music",
    "drag": "Files",
    "delete": "Files",
    "form": "Contacts",
}


def goal_app(goal: Goal) -> str:
    """The app a goal is carried out in."""
    return goal["app"] if "app" in goal else GOAL_APPS[goal["kind"]]


def _and_list(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def goal_phrase(goal: Goal) -> str:
    """The instruction sentence of one goal, e.g. "Click the Save button."."""
    kind = goal["kind"]
    if kind == "press":
        return f"Click the {goal['label']} button."
    if kind == "ticks":
        return f"On the {goal['tab']} tab, tick {_and_list(goal['boxes'])}, then click Apply."
    if kind == "search":
        return f"Search for {goal['word']}."
    if kind == "menu":
        return f"Choose {' > '.join(goal['path'])} from the menu."
    if kind == "shortcut":
        return f"Use the keyboard shortcut for {goal['path'][-1]}."
    if kind == "play":
        return f"Play the song {goal['song']}."
    if kind == "drag":
        return f"Drag {goal['file']} to {goal['folder']}."
    if kind == "delete":
        return f"Delete {_and_list(goal['files'])}."
    if kind == "form":
        parts = [f"{name} {value}" for name, value in goal["values"].items()]
        subscribe = ", tick Subscribe" if goal["subscribe"] else ""
        return f"Fill in the form with {_and_list(parts)}{subscribe}, then click Submit."
    if kind == "impossible":
        return goal["phrase"]
    raise ValueError(f"unknown goal kind {kind!r}")


def instruction(start: str, goals: Sequence[Goal]) -> str:
    """The task instruction: the goals' sentences, each prefixed with "Open <App>, then" when it
    is carried out in another app than the screen before it."""
    sentences, screen = [], start
    for goal in goals:
        phrase, app = goal_phrase(goal), goal_app(goal)
        if app != screen:
            phrase = f"Open {app}, then {phrase[0].lower()}{phrase[1:]}"
            screen = app
        sentences.append(phrase)
    return " ".join(sentences)


def desired_settings(goal: Goal) -> dict[str, bool]:
    """Every Settings box unticked except the goal's boxes."""
    wanted = {settings_key(goal["tab"], box) for box in goal["boxes"]}
    return {settings_key(tab, box): settings_key(tab, box) in wanted for tab, boxes in SETTINGS_TABS.items() for box in boxes}


def desired_form(goal: Goal) -> dict[str, str]:
    """The record the Contacts form should hold when submitted."""
    record = {name: goal["values"].get(name, "") for name in FORM_FIELDS}
    record["Subscribe"] = "yes" if goal["subscribe"] else "no"
    return record


def desired_locations(goal: Goal) -> dict[str, str]:
    """Where every file should be: the moved / deleted ones in their folder, the rest at home."""
    if goal["kind"] == "drag":
        moved = {goal["file"]: goal["folder"]}
    else:
        moved = {name: "Trash" for name in goal["files"]}
    return {name: moved.get(name, HOME) for name in FILES}


def goal_score(goal: Goal, state: DeskState) -> float:
    """How far `state` meets `goal`, in [0, 1]; only the form gives partial credit (mean of its
    four checks: Name, City, Job, Subscribe, read from the submitted record)."""
    kind = goal["kind"]
    if kind == "press":
        return float(state.pressed.get(goal["app"]) == goal["label"])
    if kind == "ticks":
        return float(state.applied == desired_settings(goal))
    if kind == "search":
        return float(state.query is not None and state.query.strip() == goal["word"])
    if kind == "menu":
        return float(state.command is not None and state.command[0] == "/".join(goal["path"]))
    if kind == "shortcut":
        return float(state.command == ("/".join(goal["path"]), "hotkey"))
    if kind == "play":
        return float(state.playing == goal["song"])
    if kind in ("drag", "delete"):
        return float(state.locations == desired_locations(goal))
    if kind == "form":
        if state.form is None:
            return 0.0
        desired = desired_form(goal)
        return sum(state.form[key].strip() == value for key, value in desired.items()) / len(desired)
    if kind == "impossible":
        return 0.0
    raise ValueError(f"unknown goal kind {kind!r}")


def task_score(goals: Sequence[Goal], feasible: bool, state: DeskState) -> float:
    """OSWorld-style score: an infeasible task scores 1 only when the episode ended with
    call_user; a feasible one scores 0 when it did, else the mean of its goals' scores."""
    if not feasible:
        return float(state.ended_by == "call_user")
    if state.ended_by == "call_user":
        return 0.0
    return sum(goal_score(goal, state) for goal in goals) / len(goals)
