"""The scripted expert: reads the state, returns the next action towards the task's goals.

It is reactive (it plans from the current state at every step, not from a fixed script), so after
a wrong action, its own epsilon mistakes or a policy's, it recovers when the task still can be
solved: it closes a wrong app, clears a wrong field, reopens a menu, scrolls back. Feasible tasks
end with finished(), infeasible ones with call_user(). With probability `epsilon` per step it
makes a plausible mistake instead: a click on another widget of the screen, another shortcut,
or other text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from steprl.envs.minidesk.catalog import DESKTOP, FORM_FIELDS, HOME, SEARCH_WORDS, SONGS, VISIBLE_ROWS, shortcuts
from steprl.envs.minidesk.goals import Goal, desired_form, desired_locations, desired_settings, goal_app, goal_score
from steprl.envs.minidesk.layout import LIST_RECT, Layout
from steprl.envs.minidesk.state import SEARCH_FIELD, SUBSCRIBE, DeskState, form_field
from steprl.envs.minidesk.widgets import Widget, find
from steprl.types import Action

_SHORTCUT_KEYS = shortcuts()


@dataclass(frozen=True)
class ExpertStep:
    """The expert's next action, the widget it aims at (None for keyboard and terminal actions)
    and a short description of it (the optional Thought)."""

    action: Action
    target: str | None
    thought: str


class ScriptedExpert:
    """Plans MiniDesk actions from the state; one per env (it shares the env's `Layout`)."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def act(
        self,
        goals: Sequence[Goal],
        feasible: bool,
        state: DeskState,
        epsilon: float = 0.0,
        rng: random.Random | None = None,
    ) -> ExpertStep:
        """The next step; with probability `epsilon` (drawn from `rng`) a plausible mistake."""
        step = self.plan(goals, feasible, state)
        if epsilon > 0.0:
            if rng is None:
                raise ValueError("the expert needs rng=random.Random(seed) when epsilon > 0")
            if rng.random() < epsilon:
                return self._mistake(step, state, rng)
        return step

    def plan(self, goals: Sequence[Goal], feasible: bool, state: DeskState) -> ExpertStep:
        """The correct next step: work on the first unmet goal that can still be met; then finish."""
        if not feasible:
            return ExpertStep(Action("call_user"), None, "This is not possible.")
        widgets = self.layout.widgets(state)
        for goal in goals:
            if goal_score(goal, state) < 1.0:
                step = self._toward(goal, state, widgets)
                if step is not None:
                    return step
        return ExpertStep(Action("finished"), None, "Done.")

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _click(widgets: Sequence[Widget], widget_id: str, double: bool = False) -> ExpertStep:
        widget = find(widgets, widget_id)
        if widget is None:
            raise RuntimeError(f"MiniDesk expert: widget {widget_id!r} is not on the screen")
        kind, verb = ("left_double", "Open") if double else ("click", "Click")
        return ExpertStep(Action(kind, point=widget.center), widget_id, f"{verb} {widget.label}.")

    def _goto(self, app: str, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep | None:
        """Open `app` (close the current one, double-click its icon); None when it is showing."""
        if state.screen == app:
            return None
        if state.dialog is not None:
            return self._click(widgets, "dialog:No")
        if state.screen == DESKTOP:
            return self._click(widgets, f"icon:{app}", double=True)
        return self._click(widgets, "close")

    def _toward(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep | None:
        """The next step toward `goal`, or None when it can no longer be met."""
        step = self._goto(goal_app(goal), state, widgets)
        if step is not None:
            return step
        kind = goal["kind"]
        if state.dialog is not None and kind != "delete":
            return self._click(widgets, "dialog:No")
        planner = {
            "press": self._press,
            "ticks": self._ticks,
            "search": self._search,
            "form": self._form,
            "menu": self._menu,
            "shortcut": self._shortcut,
            "play": self._play,
            "drag": self._drag,
            "delete": self._delete,
        }[kind]
        return planner(goal, state, widgets)

    # -- one planner per goal kind -------------------------------------------------------------

    def _press(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep:
        return self._click(widgets, f"button:{goal['label']}")

    def _ticks(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep:
        desired = desired_settings(goal)
        wrong = [key for key, value in desired.items() if state.checks[key] != value]
        wrong.sort(key=lambda key: key.split("/")[1] != state.tab)  # boxes of the shown tab first
        if wrong:
            tab = wrong[0].split("/")[1]
            if state.tab != tab:
                return self._click(widgets, f"tab:{tab}")
            return self._click(widgets, f"check:{wrong[0]}")
        return self._click(widgets, "button:Apply")

    def _fill(self, field_id: str, want: str, state: DeskState, widgets: Sequence[Widget], submit: bool) -> ExpertStep:
        """Make field `field_id` read `want`: clear it if it holds something else, focus it,
        type the missing rest (+ "\\n" when `submit`)."""
        have = state.fields[field_id]
        if not want.startswith(have) or (want == "" and have):
            return self._click(widgets, f"clear:{field_id}")
        if state.focus != field_id:
            return self._click(widgets, f"field:{field_id}")
        text = want[len(have) :] + ("\n" if submit else "")
        return ExpertStep(Action("type", text=text), None, f"Type {want}.")

    def _search(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep:
        if state.fields[SEARCH_FIELD] == goal["word"]:
            return self._click(widgets, "button:Go")
        return self._fill(SEARCH_FIELD, goal["word"], state, widgets, submit=True)

    def _form(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep:
        desired = desired_form(goal)
        for name in FORM_FIELDS:
            if state.fields[form_field(name)] != desired[name]:
                return self._fill(form_field(name), desired[name], state, widgets, submit=False)
        if state.checks[SUBSCRIBE] != (desired["Subscribe"] == "yes"):
            return self._click(widgets, f"check:{SUBSCRIBE}")
        return self._click(widgets, "button:Submit")

    def _menu(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep:
        path = tuple(goal["path"])
        depth = 0  # how much of the path is open already
        while depth < min(len(state.menu), len(path) - 1) and state.menu[depth] == path[depth]:
            depth += 1
        if depth == 0:
            return self._click(widgets, f"menu:{path[0]}")
        return self._click(widgets, "item:" + "/".join(path[: depth + 1]))

    def _shortcut(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep:
        keys = _SHORTCUT_KEYS[tuple(goal["path"])]
        return ExpertStep(Action("hotkey", text=keys), None, f"Press {keys}.")

    def _play(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep:
        song = goal["song"]
        if state.song == song:
            return self._click(widgets, "button:Play")
        index = SONGS.index(song)
        if state.offset <= index < state.offset + VISIBLE_ROWS:
            return self._click(widgets, f"row:{song}")
        direction = "down" if index >= state.offset + VISIBLE_ROWS else "up"
        x0, y0, x1, y1 = self.layout.scale.rect(*LIST_RECT)
        action = Action("scroll", point=((x0 + x1) // 2, (y0 + y1) // 2), direction=direction)
        return ExpertStep(action, None, f"Scroll {direction}.")

    def _drag(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep | None:
        desired = desired_locations(goal)
        if any(state.locations[name] != HOME and state.locations[name] != desired[name] for name in desired):
            return None  # a file went to a wrong folder: files cannot be taken out of folders
        source, target = find(widgets, f"file:{goal['file']}"), find(widgets, f"folder:{goal['folder']}")
        assert source is not None and target is not None
        action = Action("drag", point=source.center, end_point=target.center)
        return ExpertStep(action, source.id, f"Drag {goal['file']} to {goal['folder']}.")

    def _delete(self, goal: Goal, state: DeskState, widgets: Sequence[Widget]) -> ExpertStep | None:
        if state.dialog is not None:
            return self._click(widgets, "dialog:Yes" if state.dialog in goal["files"] else "dialog:No")
        desired = desired_locations(goal)
        if any(state.locations[name] != HOME and state.locations[name] != desired[name] for name in desired):
            return None  # a wrong file was deleted or moved: cannot be undone
        for name in goal["files"]:
            if state.locations[name] == HOME:
                if state.file != name:
                    return self._click(widgets, f"file:{name}")
                return self._click(widgets, "button:Delete")
        return None

    # -- mistakes --------------------------------------------------------------------------------

    def _mistake(self, step: ExpertStep, state: DeskState, rng: random.Random) -> ExpertStep:
        """A plausible wrong action in place of `step`: another shortcut for a shortcut, another
        word for typed text, else a click on another interactive widget of the screen."""
        if step.action.type == "hotkey":
            keys = rng.choice(sorted(set(_SHORTCUT_KEYS.values()) - {step.action.text}))
            return ExpertStep(Action("hotkey", text=keys), None, f"Press {keys}.")
        if step.action.type == "type":
            word = rng.choice(SEARCH_WORDS)
            return ExpertStep(Action("type", text=word), None, f"Type {word}.")
        others = [w for w in self.layout.widgets(state) if w.interactive and w.id != step.target]
        if not others:
            return step
        widget = rng.choice(others)
        return ExpertStep(Action("click", point=widget.center), widget.id, f"Click {widget.label}.")
