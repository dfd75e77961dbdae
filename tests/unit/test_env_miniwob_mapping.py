"""MiniWoB++ adapter parts that need no browser: action mapping, seeds, scores, the expert."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from steprl.envs import MissingDependencyError, make
from steprl.envs.miniwob.catalog import CATALOG, score_from_reward, split_seeds, task_id
from steprl.envs.miniwob.commands import MiniWoBCommand, UnsupportedAction, miniwob_key, to_miniwob
from steprl.envs.miniwob.expert import EXPERT_TASKS, Element, elements_from_dom, expert_action
from steprl.types import Action


# ------------------------------------------------------------------------------------------ actions
@pytest.mark.parametrize(
    "action, steps",
    [
        (Action("click", point=(10, 20)), (("CLICK_COORDS", {"coords": (10.0, 20.0)}),)),
        (Action("left_double", point=(10, 20)), (("DBLCLICK_COORDS", {"coords": (10.0, 20.0)}),)),
        (Action("hover", point=(10, 20)), (("MOVE_COORDS", {"coords": (10.0, 20.0)}),)),
        (Action("drag", point=(10, 20), end_point=(30, 40)),
         (("MOUSEDOWN_COORDS", {"coords": (10.0, 20.0)}), ("MOUSEUP_COORDS", {"coords": (30.0, 40.0)}))),
        (Action("type", text="ab"), (("TYPE_TEXT", {"text": "ab"}),)),
        # "a\nb\n": type a, Enter, type b, Enter
        (Action("type", text="a\nb\n"),
         (("TYPE_TEXT", {"text": "a"}), ("PRESS_KEY", {"key": "<Enter>"}), ("TYPE_TEXT", {"text": "b"}), ("PRESS_KEY", {"key": "<Enter>"}))),
        (Action("type", text="\n"), (("PRESS_KEY", {"key": "<Enter>"}),)),
        (Action("hotkey", text="ctrl a"), (("PRESS_KEY", {"key": "C-a"}),)),
        (Action("press", text="tab"), (("PRESS_KEY", {"key": "<Tab>"}),)),
        (Action("scroll", point=(10, 20), direction="down"), (("SCROLL_DOWN_COORDS", {"coords": (10.0, 20.0)}),)),
        # no point: the centre of the 160x210 task area, (80, 105)
        (Action("scroll", direction="up"), (("SCROLL_UP_COORDS", {"coords": (80.0, 105.0)}),)),
    ],
)
def test_actions_map_to_miniwob_steps(action, steps):
    command = to_miniwob(action)
    assert command.steps == steps and not command.ends_episode and command.pause_s == 0.0


def test_wait_and_terminal_actions():
    assert to_miniwob(Action("wait"), wait_s=0.25) == MiniWoBCommand((("NONE", {}),), pause_s=0.25)
    assert to_miniwob(Action("finished", text="x")) == MiniWoBCommand(ends_episode=True)
    assert to_miniwob(Action("call_user")) == MiniWoBCommand(ends_episode=True)


@pytest.mark.parametrize(
    "action, reason",
    [
        (Action("right_single", point=(1, 2)), "no MiniWoB\\+\\+ equivalent"),
        (Action("keydown", text="shift"), "no MiniWoB\\+\\+ equivalent"),
        (Action("press_home"), "no MiniWoB\\+\\+ equivalent"),
        (Action("open_app", text="Clock"), "no MiniWoB\\+\\+ equivalent"),
        (Action("scroll", direction="left"), "up or down only"),
        (Action("hotkey", text="ctrl c v"), "exactly one key"),
        (Action("hotkey", text="capslock"), "no key 'capslock'"),
        (Action("click"), "needs a point"),
    ],
)
def test_unsupported_actions_say_why(action, reason):
    with pytest.raises(UnsupportedAction, match=reason):
        to_miniwob(action)


def test_key_syntax():
    # modifiers in miniwob's order A-, C-, M-, S-, then one key
    assert miniwob_key("shift ctrl left") == "C-S-<ArrowLeft>"
    assert miniwob_key("alt f4") == "A-<F4>"
    assert miniwob_key("command v") == "M-v"
    assert miniwob_key("esc") == "<Escape>"


def test_mapped_keys_exist_in_miniwob():
    constants = pytest.importorskip("miniwob.constants")
    for keys in ("ctrl a", "shift tab", "enter", "backspace", "alt f4", "ctrl shift z", "esc", "pagedown", "x", "7"):
        assert miniwob_key(keys) in constants.ALL_POSSIBLE_KEYS


# ------------------------------------------------------------------------------------------ tasks
def test_split_seeds_are_disjoint_ranges():
    # task_seed 0: train = 0, 1, 2; test = the next two integers, 3, 4
    assert split_seeds("train", 3, 2, 0) == [0, 1, 2]
    assert split_seeds("test", 3, 2, 0) == [3, 4]
    # task_seed 1 starts at 1 * 100000
    assert split_seeds("train", 2, 1, 1) == [100000, 100001] and split_seeds("test", 2, 1, 1) == [100002]
    with pytest.raises(ValueError, match="split"):
        split_seeds("val", 1, 1, 0)


def test_first_test_seed_moves_the_test_seeds_past_a_warm_starts_demonstrations():
    # 4 training seeds, test seeds from 12: train 0..3, test 12..17 (seeds 4..11 are in neither)
    assert split_seeds("train", 4, 6, 0, first_test_seed=12) == [0, 1, 2, 3]
    assert split_seeds("test", 4, 6, 0, first_test_seed=12) == [12, 13, 14, 15, 16, 17]
    assert split_seeds("test", 2, 1, 1, first_test_seed=5) == [100005]  # relative to task_seed's base
    assert split_seeds("test", 3, 2, 0, first_test_seed=None) == [3, 4]  # default: right after train
    with pytest.raises(ValueError, match="first_test_seed"):
        split_seeds("test", 4, 2, 0, first_test_seed=3)  # would overlap the training seeds


def test_score_mapping():
    # MiniWoB reward r in [-1, 1] -> max(0, r), at most 1
    assert [score_from_reward(r) for r in (-1.0, 0.0, 0.35, 1.0, 1.5)] == [0.0, 0.0, 0.35, 1.0, 1.0]


def test_catalog_is_graded():
    difficulties = [t.difficulty for t in CATALOG]
    assert difficulties == sorted(difficulties) and set(difficulties) == {1, 2, 3, 4, 5}
    assert {t.name for t in CATALOG if t.expert} == set(EXPERT_TASKS)
    assert task_id("click-test", 3) == "click-test/3"


def test_missing_package_names_the_install_command(monkeypatch):
    for name in ["miniwob"] + [n for n in sys.modules if n.startswith("miniwob.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import miniwob(.x) -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "steprl.envs.miniwob.browser", raising=False)
    with pytest.raises(MissingDependencyError, match="pip install miniwob selenium"):
        make("miniwob")


def test_missing_browser_names_the_install_command():
    pytest.importorskip("miniwob")
    pytest.importorskip("selenium")
    with pytest.raises(MissingDependencyError, match="apt-get install -y chromium chromium-driver"):
        make("miniwob", chrome_binary="/nonexistent/chromium")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"observation": "pixels"}, "observation"), ({"reward": "binary"}, "reward"), ({"max_steps": 0}, "max_steps"),
     ({"tasks": ["click-test", "click-test"]}, "distinct"), ({"episode_time_limit_s": 0}, "episode_time_limit_s")],
)
def test_bad_settings_are_rejected(kwargs, message):
    pytest.importorskip("miniwob")
    with pytest.raises(ValueError, match=message):
        make("miniwob", **kwargs)


# ------------------------------------------------------------------------------------------ expert
def el(ref, tag, text="", *, parent=3, box=(0, 0, 10, 10), value="", id="", classes="", focused=False, tampered=False):
    left, top, width, height = box
    return Element(ref, parent, tag, text, value, id, classes, left, top, width, height, focused, tampered)


BODY = [el(1, "body", parent=0, box=(0, 0, 160, 210)), el(2, "div", parent=1), el(3, "div", parent=2, id="area")]


def test_elements_from_miniwob_observation():
    raw = {"ref": 4, "parent": 3, "tag": "button", "text": "OK", "value": "", "id": "subbtn", "classes": "a b",
           "left": np.array([10.0], np.float32), "top": np.array([20.0], np.float32), "width": np.array([40.0], np.float32),
           "height": np.array([20.0], np.float32), "flags": np.array([1, 0, 0, 1], np.int8)}  # fmt: skip
    (element,) = elements_from_dom([raw])
    assert element == el(4, "button", "OK", box=(10, 20, 40, 20), id="subbtn", classes="a b", focused=True)
    assert element.centre == (30, 30)  # (10 + 40/2, 20 + 20/2)


def test_expert_clicks_the_visible_part_of_an_overlapped_button():
    # ONE at x 59..99, y 156..196; TWO (drawn later, on top) covers x 37..77, y 162..202
    one = el(4, "button", "ONE", box=(59, 156, 40, 40))
    two = el(5, "button", "TWO", box=(37, 162, 40, 40))
    action = expert_action("click-test-2", {"target": "ONE"}, BODY + [one, two])
    x, y = action.point
    assert action.type == "click" and 59 <= x < 99 and 156 <= y < 196
    assert not (37 <= x < 77 and 162 <= y < 202)  # not under TWO


def test_expert_fills_a_form_step_by_step():
    def page(value, focused):
        return BODY + [el(5, "input_text", box=(12, 70, 128, 21), value=value, focused=focused),
                       el(6, "button", "Submit", box=(12, 97, 95, 31))]  # fmt: skip

    fields = {"target": "Ignacio"}
    assert expert_action("enter-text", fields, page("", False)) == Action("click", point=(76, 80))  # (12+64, 70+10)
    assert expert_action("enter-text", fields, page("", True)) == Action("type", text="Ignacio")
    assert expert_action("enter-text", fields, page("Ign", True)) == Action("type", text="acio")
    assert expert_action("enter-text", fields, page("Igx", True)) == Action("press", text="backspace")
    assert expert_action("enter-text", fields, page("Ignacio", True)) == Action("click", point=(59, 112))  # (12+47, 97+15)


def test_expert_checks_exactly_the_target_boxes():
    def label(ref, text, checked, top):
        return [el(ref, "label", box=(2, top, 60, 11)), el(ref + 1, "input_checkbox", parent=ref, box=(6, top - 4, 20, 13), value=str(checked)),
                el(-ref, "t", text, parent=ref, box=(29, top, 30, 11))]  # fmt: skip

    submit = el(20, "button", "Submit", box=(2, 139, 95, 31))
    fields = {"target 0": "ky7", "button": "submit"}
    unchecked = BODY + label(5, "z72", False, 59) + label(7, "ky7", False, 78) + [submit]
    assert expert_action("click-checkboxes", fields, unchecked) == Action("click", point=(16, 80))  # ky7's box
    wrong = BODY + label(5, "z72", True, 59) + label(7, "ky7", True, 78) + [submit]
    assert expert_action("click-checkboxes", fields, wrong) == Action("click", point=(16, 61))  # uncheck z72
    done = BODY + label(5, "z72", False, 59) + label(7, "ky7", True, 78) + [submit]
    assert expert_action("click-checkboxes", fields, done) == Action("click", point=(49, 154))  # Submit


def test_expert_button_sequence_uses_the_tampered_flag():
    one, two = el(4, "button", "ONE", box=(0, 60, 40, 40)), el(5, "button", "TWO", box=(100, 60, 40, 40))
    assert expert_action("click-button-sequence", {}, BODY + [one, two]).point == (20, 80)
    clicked = el(4, "button", "ONE", box=(0, 60, 40, 40), tampered=True)
    assert expert_action("click-button-sequence", {}, BODY + [clicked, two]).point == (120, 80)


def test_expert_waits_for_the_autocomplete_menu():
    box = el(5, "input_text", box=(10, 71, 128, 21), value="Rus", focused=True)
    assert expert_action("use-autocomplete", {"start": "Rus"}, BODY + [box]) == Action("wait")
    item = el(10, "div", "Russian Federation", parent=9, box=(11, 93, 126, 38), classes="ui-menu-item-wrapper")
    assert expert_action("use-autocomplete", {"start": "Rus"}, BODY + [box, item]) == Action("click", point=(74, 112))


def test_expert_pairs_multi_layout_labels_with_the_nearest_input():
    elements = BODY + [
        el(5, "div", "Director Name", box=(12, 57, 80, 11)), el(6, "input_text", box=(12, 68, 130, 19)),
        el(7, "div", "Movie Genre", box=(12, 97, 80, 11)), el(8, "input_text", box=(12, 108, 130, 19), value="crime"),
        el(9, "button", "Go!", box=(61, 174, 40, 19)),
    ]  # fmt: skip
    fields = {"genre": "crime", "director": "Curry"}
    assert expert_action("multi-layouts", fields, elements) == Action("click", point=(77, 77))  # the director input
    filled = [e if e.ref != 6 else el(6, "input_text", box=(12, 68, 130, 19), value="Curry") for e in elements]
    assert expert_action("multi-layouts", fields, filled) == Action("click", point=(81, 183))  # Go!


def test_expert_refuses_unknown_tasks():
    with pytest.raises(ValueError, match="No scripted MiniWoB\\+\\+ expert for 'book-flight'"):
        expert_action("book-flight", {}, BODY)
