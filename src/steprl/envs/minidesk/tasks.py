"""Task families and the train / test splits.

Each family lists its candidate tasks (every parameter combination for the small families, a
seeded sample for the large ones), shuffled by `task_seed`. The training split takes candidates
from the front of each family's list, the held-out split from the back, so the two are disjoint
and the held-out tasks do not change when `num_train_tasks` does. Tasks are spread evenly over
the families (round robin; a family with few candidates leaves its share to the others).

Difficulty (1..5) grows with the number of steps and with layout variety, see `FAMILIES`.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steprl.envs.minidesk.catalog import (
    BOARD_BUTTONS,
    BOARD_SLOTS,
    BOARD_WORDS,
    BUTTON_APPS,
    DESKTOP,
    EDITOR_MENUS,
    FILES,
    FOLDERS,
    FORM_FIELDS,
    FORM_VALUES,
    IMPOSSIBLE_WORDS,
    SEARCH_WORDS,
    SETTINGS_TABS,
    SONGS,
    VISIBLE_ROWS,
    menu_leaves,
    shortcuts,
)
from steprl.envs.minidesk.goals import goal_app, instruction
from steprl.types import Task

Candidate = dict[str, Any]  # {"start", "goals", "difficulty", "feasible", "board"}
SPLITS = ("train", "test")
SAMPLED_POOL = 300  # candidates drawn for the families with huge parameter spaces


def _candidate(start: str, goals: list[dict], difficulty: int, feasible: bool = True, board: list | None = None) -> Candidate:
    return {"start": start, "goals": goals, "difficulty": difficulty, "feasible": feasible, "board": board or []}


# -- the families, easiest first ------------------------------------------------------------------


def _click_button(rng: random.Random) -> list[Candidate]:
    return [
        _candidate(app, [{"kind": "press", "app": app, "label": label}], 1)
        for app in ("Panel", "Toolbox")
        for label in BUTTON_APPS[app]
    ]


def _shortcut(rng: random.Random) -> list[Candidate]:
    return [_candidate("Editor", [{"kind": "shortcut", "path": list(path)}], 2) for path in shortcuts()]


def _fill_field(rng: random.Random) -> list[Candidate]:
    return [_candidate("Search", [{"kind": "search", "word": word}], 2) for word in SEARCH_WORDS]


def _tick_boxes(rng: random.Random) -> list[Candidate]:
    candidates = []
    for tab, boxes in SETTINGS_TABS.items():
        for count in (1, 2, 3):
            for chosen in itertools.combinations(boxes, count):
                difficulty = 2 if tab == "General" and count <= 2 else 3
                goal = {"kind": "ticks", "tab": tab, "boxes": list(chosen)}
                candidates.append(_candidate("Settings", [goal], difficulty))
    return candidates


def _nested_menu(rng: random.Random) -> list[Candidate]:
    return [
        _candidate("Editor", [{"kind": "menu", "path": list(path)}], 2 if len(path) == 2 else 3)
        for path in menu_leaves()
    ]


def _open_app(rng: random.Random) -> list[Candidate]:
    return [
        _candidate(DESKTOP, [{"kind": "press", "app": app, "label": label}], 3)
        for app, labels in BUTTON_APPS.items()
        for label in labels
    ]


def _scroll_list(rng: random.Random) -> list[Candidate]:
    return [_candidate("Music", [{"kind": "play", "song": song}], 3) for song in SONGS[VISIBLE_ROWS:]]


def _drag_item(rng: random.Random) -> list[Candidate]:
    return [
        _candidate("Files", [{"kind": "drag", "file": name, "folder": folder}], 3)
        for name in FILES
        for folder in FOLDERS
    ]


def _delete_file(rng: random.Random) -> list[Candidate]:
    return [
        _candidate("Files", [{"kind": "delete", "files": list(chosen)}], 2 + count)
        for count in (1, 2)
        for chosen in itertools.combinations(FILES, count)
    ]


def _form_goal(rng: random.Random, fields: int, subscribe: bool) -> dict:
    chosen = set(rng.sample(FORM_FIELDS, fields))
    values = {name: rng.choice(FORM_VALUES[name]) for name in FORM_FIELDS if name in chosen}
    return {"kind": "form", "values": values, "subscribe": subscribe}


def _fill_form(rng: random.Random) -> list[Candidate]:
    return _sampled(rng, lambda: _candidate("Contacts", [_form_goal(rng, rng.choice((2, 3)), rng.random() < 0.5)], 4))


def _find_button(rng: random.Random) -> list[Candidate]:
    def draw() -> Candidate:
        labels = rng.sample(BOARD_WORDS, BOARD_BUTTONS)
        slots = rng.sample(range(BOARD_SLOTS), BOARD_BUTTONS)
        goal = {"kind": "press", "app": "Board", "label": rng.choice(labels)}
        return _candidate("Board", [goal], 4, board=[[label, slot] for label, slot in zip(labels, slots)])

    return _sampled(rng, draw)


def _chain_goal(kind: str, rng: random.Random) -> dict:
    """One goal of a desktop chain; each needs >= 2 steps so that a chain needs >= 8."""
    if kind == "ticks":
        tab = rng.choice(sorted(SETTINGS_TABS))
        return {"kind": "ticks", "tab": tab, "boxes": rng.sample(SETTINGS_TABS[tab], rng.choice((1, 2)))}
    if kind == "search":
        return {"kind": "search", "word": rng.choice(SEARCH_WORDS)}
    if kind == "menu":
        return {"kind": "menu", "path": list(rng.choice([p for p in menu_leaves() if len(p) == 3]))}
    if kind == "play":  # at most two scrolls away, to keep chains within the default 15 steps
        return {"kind": "play", "song": rng.choice(SONGS[VISIBLE_ROWS : VISIBLE_ROWS + 10])}
    if kind == "delete":
        return {"kind": "delete", "files": [rng.choice(FILES)]}
    return _form_goal(rng, 2, subscribe=False)


def _desktop_chain(rng: random.Random) -> list[Candidate]:
    kinds = ("ticks", "search", "menu", "play", "delete", "form")

    def draw() -> Candidate:
        first, second = rng.sample(kinds, 2)
        return _candidate(DESKTOP, [_chain_goal(first, rng), _chain_goal(second, rng)], 5)

    return _sampled(rng, draw)


def _infeasible(rng: random.Random) -> list[Candidate]:
    """Instructions naming a button, box, menu item or app that does not exist: the right
    answer is call_user(). Their key word is never a label anywhere (see catalog.py)."""
    candidates = []
    for word in IMPOSSIBLE_WORDS:
        phrases = [(app, f"Click the {word} button.") for app in BUTTON_APPS]
        phrases += [("Settings", f"On the {tab} tab, tick {word}, then click Apply.") for tab in SETTINGS_TABS]
        phrases += [("Editor", f"Choose {heading} > {word} from the menu.") for heading in EDITOR_MENUS]
        phrases += [(DESKTOP, f"Open {word}, then click the OK button.")]
        for start, phrase in phrases:
            goal = {"kind": "impossible", "app": start, "phrase": phrase}
            candidates.append(_candidate(start, [goal], 2, feasible=False))
    return candidates


def _sampled(rng: random.Random, draw: Callable[[], Candidate], size: int = SAMPLED_POOL) -> list[Candidate]:
    """Up to `size` distinct candidates from `draw` (a seeded sampler)."""
    seen: dict[str, Candidate] = {}
    for _ in range(size * 20):
        candidate = draw()
        seen.setdefault(json.dumps(candidate, sort_keys=True), candidate)
        if len(seen) == size:
            break
    return list(seen.values())


@dataclass(frozen=True)
class Family:
    """A task family: its name (Task.family), difficulty range and candidate generator."""

    name: str
    difficulty: tuple[int, int]
    candidates: Callable[[random.Random], list[Candidate]]
    summary: str


FAMILIES: tuple[Family, ...] = (
    Family("click_button", (1, 1), _click_button, "click a named button among distractors (fixed layout)"),
    Family("shortcut", (2, 2), _shortcut, "run an Editor command with its keyboard shortcut"),
    Family("fill_field", (2, 2), _fill_field, "type a word into the search field and submit"),
    Family("tick_boxes", (2, 3), _tick_boxes, "tick 1-3 boxes on a Settings tab, then Apply"),
    Family("nested_menu", (2, 3), _nested_menu, "choose an Editor command through menus and submenus"),
    Family("open_app", (3, 3), _open_app, "double-click a desktop icon, then click a button in the app"),
    Family("scroll_list", (3, 3), _scroll_list, "scroll the Music list to a song, select it, Play"),
    Family("drag_item", (3, 3), _drag_item, "drag a file onto a folder"),
    Family("delete_file", (3, 4), _delete_file, "delete one or two files, confirming a dialog"),
    Family("fill_form", (4, 4), _fill_form, "fill 2-3 form fields (+ a checkbox) and submit; partial credit"),
    Family("find_button", (4, 4), _find_button, "click a named button on a board shuffled per task"),
    Family("desktop_chain", (5, 5), _desktop_chain, "from the desktop, carry out two goals in two apps (8+ steps)"),
    Family("infeasible", (2, 2), _infeasible, "the named element does not exist: answer call_user()"),
)
FAMILY_NAMES = tuple(family.name for family in FAMILIES)


def select_families(names: Sequence[str] | None) -> list[Family]:
    """The families named in `names` (all when None), in curriculum order."""
    if names is None:
        return list(FAMILIES)
    if isinstance(names, str):
        names = [names]
    unknown = sorted(set(names) - set(FAMILY_NAMES))
    if unknown:
        raise ValueError(f"Unknown MiniDesk task families {unknown}. Known families: {', '.join(FAMILY_NAMES)}.")
    if not names:
        raise ValueError(f"families is empty; give at least one of: {', '.join(FAMILY_NAMES)} (or None for all).")
    return [family for family in FAMILIES if family.name in set(names)]


def _round_robin(total: int, capacities: Sequence[int]) -> list[int]:
    """Deal `total` slots one at a time over the families that still have room."""
    quotas = [0] * len(capacities)
    while total > 0:
        dealt = False
        for i, capacity in enumerate(capacities):
            if total > 0 and quotas[i] < capacity:
                quotas[i] += 1
                total -= 1
                dealt = True
        if not dealt:
            break
    return quotas


def _task(family: Family, split: str, index: int, candidate: Candidate) -> Task:
    return Task(
        id=f"minidesk/{family.name}/{split}/{index:03d}",
        family=family.name,
        instruction=instruction(candidate["start"], candidate["goals"]),
        difficulty=candidate["difficulty"],
        split=split,
        config={key: candidate[key] for key in ("start", "goals", "board")},
        feasible=candidate["feasible"],
    )


def build_splits(
    task_seed: int, num_train: int, num_test: int, families: Sequence[str] | None = None
) -> dict[str, list[Task]]:
    """The train and test task lists (same arguments -> identical tasks)."""
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train_tasks and num_test_tasks must be >= 0")
    chosen = select_families(families)
    pools = []
    for family in chosen:
        rng = random.Random(f"minidesk:{task_seed}:{family.name}")
        pool = family.candidates(rng)
        rng.shuffle(pool)
        pools.append(pool)
    # The test share first, keeping one candidate per family for training where possible.
    test_quota = _round_robin(num_test, [max(len(pool) - 1, 0) for pool in pools])
    train_quota = _round_robin(num_train, [len(pool) - q for pool, q in zip(pools, test_quota)])
    available = sum(len(pool) for pool in pools)
    if sum(test_quota) < num_test or sum(train_quota) < num_train:
        raise ValueError(
            f"MiniDesk has {available} distinct tasks in the chosen families; asked for "
            f"{num_train} train + {num_test} test. Lower num_train_tasks / num_test_tasks or add families."
        )
    splits: dict[str, list[Task]] = {"train": [], "test": []}
    for family, pool, n_train, n_test in zip(chosen, pools, train_quota, test_quota):
        splits["train"] += [_task(family, "train", i, c) for i, c in enumerate(pool[:n_train])]
        splits["test"] += [_task(family, "test", i, c) for i, c in enumerate(pool[len(pool) - n_test :])]
    return splits


def check_task_config(task: Task) -> None:
    """Raise a clear error when `task` is not a MiniDesk task."""
    config = task.config
    if not isinstance(config, dict) or not {"start", "goals"} <= set(config) or not config["goals"]:
        raise ValueError(
            f"Task {task.id!r} is not a MiniDesk task (its config lacks 'start'/'goals'). "
            "Use tasks from MiniDeskEnv.tasks('train' | 'test')."
        )
    for goal in config["goals"]:
        try:
            goal_app(goal)
        except (KeyError, TypeError):
            raise ValueError(f"Task {task.id!r} has an unknown MiniDesk goal {goal!r}.") from None
