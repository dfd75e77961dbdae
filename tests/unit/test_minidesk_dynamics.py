"""MiniDesk widget behaviour and scoring, checked step by step with hand-computed expectations."""

from __future__ import annotations

import re

import numpy as np
import pytest

from steprl.envs.minidesk import MiniDeskEnv
from steprl.envs.minidesk.widgets import find
from steprl.types import Task


def make_task(start: str, goals: list[dict], feasible: bool = True, board=(), max_steps=None) -> Task:
    return Task(
        id="minidesk/test/train/000",
        family="test",
        instruction="test",
        config={"start": start, "goals": goals, "board": [list(b) for b in board]},
        feasible=feasible,
        max_steps=max_steps,
    )


@pytest.fixture()
def env() -> MiniDeskEnv:
    return MiniDeskEnv(observation="both")


def widget(env: MiniDeskEnv, widget_id: str):
    found = find(env.layout.widgets(env.state), widget_id)
    assert found is not None, f"{widget_id} is not on the screen"
    return found


def click(env: MiniDeskEnv, widget_id: str, kind: str = "click"):
    x, y = widget(env, widget_id).center
    return env.step(f"Action: {kind}(start_box='({x},{y})')")


def test_click_button_sets_the_status(env):
    env.reset(make_task("Panel", [{"kind": "press", "app": "Panel", "label": "Save"}]))
    # Panel "Save" is the 3rd button of row 1: x0 = 16 + 2·106 = 228, y0 = 36; 92x44 -> centre (273, 57)
    assert widget(env, "button:Save").center == (273, 57)
    result = env.step("Action: click(start_box='(273,57)')")
    assert env.state.pressed == {"Panel": "Save"} and result.info["changed"]
    assert 'status "Last: Save"' in result.observation.a11y
    assert env.evaluate() == 1.0
    click(env, "button:Open")
    assert env.evaluate() == 0.0  # the last button pressed counts


def test_desktop_icons_need_a_double_click(env):
    env.reset(make_task("desktop", [{"kind": "press", "app": "Mail", "label": "Send"}]))
    click(env, "icon:Mail")
    assert env.state.screen == "desktop" and env.state.icon == "Mail"
    click(env, "icon:Mail", kind="left_double")
    assert env.state.screen == "Mail"
    click(env, "close")
    assert env.state.screen == "desktop"


def test_menus_submenus_and_outside_clicks(env):
    env.reset(make_task("Editor", [{"kind": "menu", "path": ["Format", "Font", "Mono"]}]))
    click(env, "menu:Format")
    assert env.state.menu == ("Format",)
    click(env, "item:Format/Font")
    assert env.state.menu == ("Format", "Font")
    # the submenu opens beside its parent item: x0 = 108 + 128 = 236, y0 = 40 + 3·20 = 100
    assert widget(env, "item:Format/Font/Mono").rect == (236, 140, 364, 160)
    env.step("Action: click(start_box='(300,240)')")  # outside the menus: only closes them
    assert env.state.menu == () and env.state.command is None
    click(env, "menu:Format")
    click(env, "item:Format/Font")
    click(env, "item:Format/Font/Mono")
    assert env.state.command == ("Format/Font/Mono", "menu") and env.state.menu == ()
    assert env.evaluate() == 1.0


def test_shortcuts_and_escape(env):
    env.reset(make_task("Editor", [{"kind": "shortcut", "path": ["File", "Save"]}]))
    click(env, "menu:File")
    env.step("Action: hotkey(key='Escape')")
    assert env.state.menu == ()
    env.step("Action: hotkey(key='s+ctrl')")  # key order does not matter
    assert env.state.command == ("File/Save", "hotkey") and env.evaluate() == 1.0
    env.step("Action: hotkey(key='ctrl b')")
    assert env.state.command == ("Format/Bold", "hotkey") and env.evaluate() == 0.0


def test_menu_goal_accepts_the_shortcut_but_shortcut_goal_needs_the_hotkey(env):
    env.reset(make_task("Editor", [{"kind": "menu", "path": ["File", "Save"]}]))
    env.step("Action: hotkey(key='ctrl s')")
    assert env.evaluate() == 1.0
    env.reset(make_task("Editor", [{"kind": "shortcut", "path": ["File", "Save"]}]))
    click(env, "menu:File")
    click(env, "item:File/Save")
    assert env.evaluate() == 0.0


def test_text_field_focus_type_submit_clear(env):
    env.reset(make_task("Search", [{"kind": "search", "word": "apple"}]))
    env.step("Action: type(content='lost')")  # nothing focused: nothing happens
    assert env.state.fields["Search.query"] == ""
    click(env, "field:Search.query")
    assert env.state.focus == "Search.query"
    env.step("Action: type(content='appl')")
    env.step("Action: hotkey(key='backspace')")
    assert env.state.fields["Search.query"] == "app" and env.state.query is None
    env.step("Action: type(content='le\\n')")
    assert env.state.query == "apple" and env.evaluate() == 1.0
    click(env, "clear:Search.query")
    assert env.state.fields["Search.query"] == "" and env.state.focus == "Search.query"
    click(env, "button:Go")  # clicking elsewhere drops the focus, Go submits the empty field
    assert env.state.query == "" and env.state.focus is None and env.evaluate() == 0.0


def test_settings_tabs_ticks_and_apply(env):
    env.reset(make_task("Settings", [{"kind": "ticks", "tab": "Sound", "boxes": ["Mute", "Bass"]}]))
    assert widget(env, "tab:General").state == "active"
    click(env, "tab:Sound")
    click(env, "check:Settings/Sound/Mute")
    click(env, "check:Settings/Sound/Bass")
    assert env.evaluate() == 0.0  # not applied yet
    assert 'status "Not applied"' in env.step("Action: wait()").observation.a11y
    click(env, "button:Apply")
    assert env.evaluate() == 1.0
    click(env, "check:Settings/Sound/Voice")  # an extra box, applied, breaks it
    click(env, "button:Apply")
    assert env.evaluate() == 0.0


def test_music_list_scrolls_in_steps_of_five_and_clamps(env):
    env.reset(make_task("Music", [{"kind": "play", "song": "Willow"}]))
    centre = widget(env, "list:Songs").center
    for expected in (5, 10, 15, 20, 23, 23):  # 30 songs, 7 visible: the last offset is 30 - 7 = 23
        env.step(f"Action: scroll(start_box='({centre[0]},{centre[1]})', direction='down')")
        assert env.state.offset == expected
    env.step("Action: scroll(start_box='(400,200)', direction='up')")  # outside the list
    assert env.state.offset == 23
    env.step("Action: scroll(direction='up')")  # no point: the list
    assert env.state.offset == 18
    env.step("Action: scroll(direction='down')")
    click(env, "row:Willow")
    assert env.state.song == "Willow" and env.state.playing is None
    click(env, "button:Play")
    assert env.state.playing == "Willow" and env.evaluate() == 1.0


def test_drag_and_drop(env):
    env.reset(make_task("Files", [{"kind": "drag", "file": "budget", "folder": "Archive"}]))
    source, target = widget(env, "file:budget").center, widget(env, "folder:Archive").center
    env.step(f"Action: drag(start_box='({source[0]},{source[1]})', end_box='(440,270)')")  # onto nothing
    assert env.state.locations["budget"] == "home"
    env.step(f"Action: drag(start_box='({source[0]},{source[1]})', end_box='({target[0]},{target[1]})')")
    assert env.state.locations["budget"] == "Archive" and env.evaluate() == 1.0
    assert widget(env, "folder:Archive").value == "1"
    assert find(env.layout.widgets(env.state), "file:budget") is None


def test_delete_dialog_is_modal(env):
    env.reset(make_task("Files", [{"kind": "delete", "files": ["photo"]}]))
    click(env, "file:photo")
    click(env, "button:Delete")
    assert env.state.dialog == "photo"
    click(env, "close")  # modal: the window cannot be closed now
    assert env.state.screen == "Files" and env.state.dialog == "photo"
    click(env, "dialog:No")
    assert env.state.dialog is None and env.state.locations["photo"] == "home"
    click(env, "button:Delete")
    click(env, "dialog:Yes")
    assert env.state.locations["photo"] == "Trash" and env.evaluate() == 1.0


def test_form_partial_credit(env):
    goal = {"kind": "form", "values": {"Name": "Alice", "City": "Rome"}, "subscribe": True}
    env.reset(make_task("Contacts", [goal]))
    click(env, "field:Contacts.Name")
    env.step("Action: type(content='Alice')")
    click(env, "field:Contacts.City")
    env.step("Action: type(content='Oslo')")
    assert env.evaluate() == 0.0  # not submitted
    click(env, "button:Submit")
    # checks: Name Alice ok, City Oslo != Rome, Job "" ok, Subscribe no != yes -> 2/4
    assert env.state.form == {"Name": "Alice", "City": "Oslo", "Job": "", "Subscribe": "no"}
    assert env.evaluate() == 0.5
    click(env, "check:Contacts/Subscribe")
    env.step("Action: type(content='\\n')")  # nothing focused after the click: no submit
    click(env, "field:Contacts.Job")
    env.step("Action: type(content='\\n')")  # Enter in a field submits the form
    assert env.evaluate() == 0.75  # 3/4: only the city is wrong


def test_board_layout_comes_from_the_task(env):
    board = [("Fox", 0), ("Owl", 19)]
    env.reset(make_task("Board", [{"kind": "press", "app": "Board", "label": "Owl"}], board=board))
    # slot 19: column 4, row 3 -> x0 = 14 + 4·86 = 358, y0 = 32 + 3·56 = 200; 76x44
    assert widget(env, "button:Owl").rect == (358, 200, 434, 244)
    click(env, "button:Owl")
    assert env.evaluate() == 1.0


def test_terminal_actions_and_scoring_rules(env):
    press = {"kind": "press", "app": "Panel", "label": "OK"}
    env.reset(make_task("Panel", [press]))
    click(env, "button:OK")
    result = env.step("Action: call_user()")
    assert result.done and env.evaluate() == 0.0  # feasible task ended with call_user scores 0
    impossible = {"kind": "impossible", "app": "Panel", "phrase": "Click the Launch button."}
    env.reset(make_task("Panel", [impossible], feasible=False))
    assert env.step("Action: finished()").done and env.evaluate() == 0.0
    env.reset(make_task("Panel", [impossible], feasible=False))
    assert env.step("Action: call_user()").done and env.evaluate() == 1.0
    env.reset(make_task("Panel", [press]))
    click(env, "button:OK")
    result = env.step("Action: finished(content='done it')")
    assert result.done and env.state.answer == "done it" and env.evaluate() == 1.0


def test_task_budget_overrides_the_env_default(env):
    env.reset(make_task("Panel", [{"kind": "press", "app": "Panel", "label": "OK"}], max_steps=2))
    assert not env.step("Action: wait()").done
    result = env.step("Action: wait()")
    assert result.done and result.info["ended_by"] == "budget"


def test_two_goal_tasks_give_partial_credit(env):
    goals = [{"kind": "press", "app": "Panel", "label": "OK"}, {"kind": "search", "word": "pear"}]
    env.reset(make_task("Panel", goals))
    click(env, "button:OK")
    assert env.evaluate() == 0.5  # mean of the two goals: (1 + 0) / 2


def test_relative_coordinates_and_a_model_image_size():
    for kwargs in ({"coords": "relative1000"}, {"model_image_size": [224, 140]}):
        env = MiniDeskEnv(**kwargs)
        for task in env.tasks("train")[::7]:
            env.reset(task)
            while not env.state.done:
                env.step(env.expert_response())
            assert env.evaluate() == 1.0, (kwargs, task.id)
    env = MiniDeskEnv(coords="relative1000")
    env.reset(make_task("Panel", [{"kind": "press", "app": "Panel", "label": "OK"}]))
    # OK button centre (61, 57): 61·1000/448 = 136.2 -> 136 ; 57·1000/280 = 203.6 -> 204
    assert env.expert_response() == "Action: click(start_box='(136,204)')"


def test_observation_modes():
    task = make_task("Panel", [{"kind": "press", "app": "Panel", "label": "OK"}])
    shot = MiniDeskEnv(observation="screenshot").reset(task)
    assert shot.a11y is None and shot.screenshot.any()
    text = MiniDeskEnv(observation="a11y").reset(task)
    assert not text.screenshot.any() and text.screenshot.shape == (280, 448, 3)
    both = MiniDeskEnv(observation="both").reset(task)
    assert np.array_equal(both.screenshot, shot.screenshot) and both.a11y == text.a11y
    assert 'button "OK" - [16,36,108,80]' in both.a11y.splitlines()
    assert both.instruction == "test" and both.state_hash == shot.state_hash


def test_vocabulary_covers_instructions_a11y_and_thoughts():
    env = MiniDeskEnv(observation="both")
    vocabulary = set(env.vocabulary())
    assert env.vocabulary() == sorted(vocabulary)
    words: set[str] = set()
    for split in ("train", "test"):
        for task in env.tasks(split):
            observation = env.reset(task)
            words.update(re.findall(r"[A-Za-z]+", task.instruction + observation.a11y))
            while not env.state.done:
                response = env.expert_response(thought="short")
                words.update(re.findall(r"[A-Za-z]+", response))
                result = env.step(response)
                words.update(re.findall(r"[A-Za-z]+", result.observation.a11y))
    assert words <= vocabulary, sorted(words - vocabulary)
    assert {"Click", "Save", "Format", "Mono", "Launch", "Thought", "start", "box"} <= vocabulary
    assert "SAVE" not in vocabulary and "42" not in vocabulary  # words as written; no numbers
