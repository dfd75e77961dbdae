"""AndroidWorldEnv against AndroidWorld's REAL JSONAction, actuation and adb_utils code (copied
unmodified from google-research/android_world into tests/fakes/android_world, see UPSTREAM.md; it
needs `android-env`), with the emulator, the task registry and env_launcher replaced by fakes."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from steprl.envs import MissingDependencyError, make
from steprl.envs.androidworld.tasks import difficulty_of, instance_seed, random_params, split_names, step_budget

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"
# The fake phone is 1080x2400; with model_image_size = the screen, model points are screen pixels.
IDENTITY = {"coords": "absolute", "model_image_size": [1080, 2400]}
ALL_NAMES = ["ClockTimerEntry", "ContactsAddContact", "RetroPlaylistCount", "SystemWifiTurnOff", "SystemWifiTurnOn"]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch):
    """Put the android_world test package on sys.path; forget it afterwards. AndroidWorld's own
    waits (1 s after a wait or a focus tap) are skipped."""
    pytest.importorskip("android_env", reason="AndroidWorld's code needs android-env: pip install -r requirements/android-test.txt")
    monkeypatch.syspath_prepend(str(FAKES))
    import time

    monkeypatch.setattr(time, "sleep", lambda s: None)
    yield
    for name in [n for n in sys.modules if n == "android_world" or n.startswith("android_world.")]:
        del sys.modules[name]


def build(**overrides):
    kwargs = {"test_fraction": 0.0, "transition_pause_s": None, **IDENTITY, **overrides}
    return make("androidworld", **kwargs)


def start(env, name: str):
    task = next(t for t in env.tasks("train") if t.family == name)
    return task, env.reset(task)


# ------------------------------------------------------------------------------------------ formulas
def test_instance_seed_is_androidworlds_sha256_rule():
    # sha256(b"30_SystemWifiTurnOn_0") = 9fa0ba77...dbde74f3 (hex); mod 2**32 keeps the last 8 hex
    # digits: 0xdbde74f3 = 3688789235.
    assert instance_seed(30, "SystemWifiTurnOn", 0) == 3688789235
    assert instance_seed(30, "SystemWifiTurnOn", 0) != instance_seed(30, "SystemWifiTurnOn", 1)


def test_step_budget_and_difficulty():
    # int(10 * complexity): 1 -> 10, 1.5 -> 15, 2.5 -> 25; difficulty = ceil(complexity) capped at 5
    assert [step_budget(c) for c in (1, 1.5, 2.5, 0.04)] == [10, 15, 25, 1]
    assert [difficulty_of(c) for c in (1, 1.5, 4, 7.5)] == [1, 2, 4, 5]


def test_split_names_is_a_seeded_partition():
    names = ["a", "b", "c", "d", "e"]
    split = split_names(names, 0.2, 0)
    assert len(split["test"]) == 1 and len(split["train"]) == 4  # round(0.2 * 5) = 1
    assert sorted(split["test"] + split["train"]) == names
    assert split == split_names(list(reversed(names)), 0.2, 0)  # input order does not matter
    assert split_names(names, 0.0, 0) == {"test": [], "train": names}
    assert len(split_names(names, 0.5, 1)["test"]) == 2  # round(2.5) = 2 (banker's rounding)
    with pytest.raises(ValueError, match="test_fraction"):
        split_names(names, 1.0, 0)


def test_random_params_are_seeded_and_leave_the_global_random_state_alone(fakes):
    from android_world.task_evals.single.system import RetroPlaylistCount

    random.seed(123)
    before = random.random()
    random.seed(123)
    first = random_params(RetroPlaylistCount, 42)
    assert random.random() == before  # the caller's stream is untouched
    assert first == random_params(RetroPlaylistCount, 42) and first["seed"] == 42
    assert {k for k in first} == {"playlist", "count", "seed"}


# ------------------------------------------------------------------------------------------ building
def test_the_upstream_code_is_strict(fakes):
    from android_world.env import env_launcher, json_action

    with pytest.raises(TypeError):
        env_launcher.load_and_setup_env(5554)
    with pytest.raises(ValueError, match="console port"):
        env_launcher.load_and_setup_env(console_port=5555)
    with pytest.raises(ValueError, match="index or"):
        json_action.JSONAction(action_type="click", index=1, x=1, y=2)
    with pytest.raises(ValueError, match="Invalid action type"):
        json_action.JSONAction(action_type="type")
    with pytest.raises(ValueError, match="Invalid action type"):
        json_action.JSONAction(action_type="drag_and_drop")  # upstream has no point-to-point JSONAction
    device = env_launcher.load_and_setup_env(console_port=5554)
    with pytest.raises(TypeError):
        device.get_state(True)
    assert "UPSTREAM COPY" in Path(json_action.__file__).read_text()  # the real code, not a stand-in


def test_config_file_builds_without_touching_an_emulator(fakes):
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "env" / "androidworld.yaml"), resolve=True)
    assert cfg.pop("name") == "androidworld" and cfg.pop("worker_seed_key") == "emulator_slot"
    env = make("androidworld", **cfg)
    assert env.device is None and env.screen_size == (1080, 2400) and env.supports_snapshot is False
    train, test = env.tasks("train"), env.tasks("test")
    assert len(test) == 1 and len(train) == 4  # round(0.2 * 5 names) = 1 held-out name
    assert {t.family for t in train}.isdisjoint({t.family for t in test})
    assert env.device is None
    env.close()


def test_task_instances(fakes):
    env = build(n_task_combinations=3)
    tasks = env.tasks("train")
    assert len(tasks) == 15 and [t.id for t in tasks[:3]] == ["ClockTimerEntry/0", "ClockTimerEntry/1", "ClockTimerEntry/2"]
    contact = next(t for t in tasks if t.id == "ContactsAddContact/1")
    assert contact.max_steps == 25 and contact.difficulty == 3  # complexity 2.5
    assert contact.config["params"]["seed"] == instance_seed(30, "ContactsAddContact", 1)
    assert contact.instruction == f"Create a new contact for {contact.config['params']['name']}."
    assert [t.instruction for t in tasks] == [t.instruction for t in build(n_task_combinations=3).tasks("train")]
    assert build(tasks=["SystemWifiTurnOn"]).tasks("train")[0].max_steps == 10


def test_bad_settings_give_one_clear_message(fakes):
    with pytest.raises(ValueError, match="Unknown AndroidWorld task.*Wifi"):
        build(tasks=["Wifi"])
    with pytest.raises(ValueError, match="task_family='phone'"):
        build(task_family="phone")


def test_missing_package_names_the_install_command(monkeypatch):
    for name in ["android_world"] + [n for n in sys.modules if n.startswith("android_world.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import android_world(.x) -> ModuleNotFoundError
    with pytest.raises(MissingDependencyError, match="git clone https://github.com/google-research/android_world"):
        make("androidworld")


def test_each_worker_slot_connects_to_its_own_emulator(fakes):
    # slot = emulator_slot mod num_emulators = 3 mod 2 = 1 -> console 5554 + 1*2, grpc 8554 + 1*1
    env = build(emulator_slot=3, num_emulators=2, adb_path="/opt/adb")
    start(env, "SystemWifiTurnOn")
    assert env.device.launch_args == {"console_port": 5556, "grpc_port": 8555, "emulator_setup": False,
                                      "freeze_datetime": True, "adb_path": "/opt/adb"}  # fmt: skip
    env.close()


def test_screen_size_is_checked_when_the_emulator_connects(fakes):
    env = build(screen_size=[720, 1280], model_image_size=None)
    with pytest.raises(ValueError, match=r"env.screen_size=\[1080,2400\]"):
        start(env, "SystemWifiTurnOn")


# ------------------------------------------------------------------------------------------ episodes
def test_reset_step_evaluate_close_round_trip(fakes):
    env = build()
    task, obs = start(env, "SystemWifiTurnOn")
    device = env.device
    assert device.resets == [True] and device.state_requests == [True]  # home screen, stable state
    assert obs.screenshot.shape == (2400, 1080, 3) and obs.screenshot.dtype == np.uint8 and obs.instruction == "Turn wifi on."
    result = env.step("Thought: the switch.\nAction: click(start_box='(950,350)')")
    assert result.info["action_valid"] and result.info["json_actions"] == [{"action_type": "click", "x": 950, "y": 350}]
    assert device.wifi_on and result.observation.state_hash != obs.state_hash and not result.done
    end = env.step("Action: finished()")
    assert end.done and end.info["ended_by"] == "finished"
    assert device.executed[-1].action_type == "status" and device.executed[-1].goal_status == "complete"
    assert adb(device)[:1] == [("tap", 950, 350)]  # what AndroidWorld's actuation sent to the device
    score = env.evaluate()
    assert isinstance(score, float) and score == 1.0
    env.close()
    assert device.tear_downs == ["SystemWifiTurnOn"] and device.closed and env.device is None
    env.close()  # idempotent


def test_tear_down_happens_on_the_next_reset(fakes):
    env = build()
    start(env, "SystemWifiTurnOn")
    start(env, "ContactsAddContact")
    assert env.device.tear_downs == ["SystemWifiTurnOn"]
    start(env, "ClockTimerEntry")  # starts in the current app, not on the home screen
    assert env.device.resets == [True, True, False]
    env.close()


def test_transition_pause_reads_the_screen_without_waiting_for_stability(fakes):
    env = build(transition_pause_s=0.0)
    start(env, "SystemWifiTurnOn")
    env.step("Action: wait()")
    # reset's screen, AndroidWorld's execute_action reading the elements, the screen after the action
    assert env.device.state_requests == [False, False, False]
    env.close()


CLICK_FIELD = "Action: click(start_box='(540,650)')"


def adb(device) -> list[tuple]:
    """The AdbRequests AndroidWorld's code sent to the phone, as short tuples."""
    out: list[tuple] = []
    for request in device.phone.requests:
        kind = request.WhichOneof("command")
        if kind == "tap":
            out.append(("tap", request.tap.x, request.tap.y))
        elif kind == "press_button":
            from android_env.proto import adb_pb2

            out.append((adb_pb2.AdbRequest.PressButton.Button.Name(request.press_button.button).lower(),))
        elif kind == "input_text":
            out.append(("text", request.input_text.text))
        else:
            args = list(request.generic.args)
            out.append(("swipe", *map(int, args[3:7])) if args[:3] == ["shell", "input", "swipe"] else ("generic", *args))
    return out


# The fake phone's elements (see tests/fakes/android_world/env/interface.py): 0 a list over
# (0..1080, 800..2200); 2 the text field, centre ((100+980)/2, (600+700)/2) = (540, 650); 3 a smaller
# list over (600..1000, 1000..1800), centre (800, 1400).
@pytest.mark.parametrize(
    "before, response, steps, sent",
    [
        ([], "Action: click(start_box='(10,20)')", [{"action_type": "click", "x": 10, "y": 20}], [("tap", 10, 20)]),
        ([], "Action: left_double(start_box='(10,20)')", [{"action_type": "double_tap", "x": 10, "y": 20}], [("tap", 10, 20), ("tap", 10, 20)]),
        ([], "Action: long_press(start_box='(10,20)')", [{"action_type": "long_press", "x": 10, "y": 20}], [("swipe", 10, 20, 10, 20)]),
        # type(): a tap on the focused field, then the text as written; Enter only for "\n"
        ([CLICK_FIELD], "Action: type(content='Ada')", [{"action_type": "click", "x": 540, "y": 650}, {"adb": "type", "text": "Ada"}],
         [("tap", 540, 650), ("text", "Ada")]),
        ([CLICK_FIELD], "Action: type(content='Ada Lovelace\n')", [{"action_type": "click", "x": 540, "y": 650}, {"adb": "type", "text": "Ada Lovelace\n"}],
         [("tap", 540, 650), ("text", "Ada"), ("text", "%s"), ("text", "Lovelace"), ("enter",)]),
        # scroll at a point: inside the smallest scrollable element seen there, centre -> top edge for "down"
        ([], "Action: scroll(start_box='(800,1500)', direction='down')", [{"adb": "swipe", "start": (800, 1400), "end": (800, 1000), "duration_ms": None}],
         [("swipe", 800, 1400, 800, 1000)]),
        # ... element index 0 (the big list) is scrolled too, not the whole screen
        ([], "Action: scroll(start_box='(300,1500)', direction='up')", [{"adb": "swipe", "start": (540, 1500), "end": (540, 2200), "duration_ms": None}],
         [("swipe", 540, 1500, 540, 2200)]),
        ([], "Action: scroll(direction='up')", [{"action_type": "scroll", "direction": "up"}], [("swipe", 540, 1200, 540, 2400)]),
        # drag keeps the model's points (upward drags do not start on the home-gesture edge)
        ([], "Action: drag(start_box='(500,2000)', end_box='(480,500)')", [{"adb": "swipe", "start": (500, 2000), "end": (480, 500), "duration_ms": 500}],
         [("swipe", 500, 2000, 480, 500)]),
        ([], "Action: drag(start_box='(100,500)', end_box='(900,600)')", [{"adb": "swipe", "start": (100, 500), "end": (900, 600), "duration_ms": 500}],
         [("swipe", 100, 500, 900, 600)]),
        ([], "Action: open_app(app_name='Clock')", [{"action_type": "open_app", "app_name": "Clock"}], None),
        ([], "Action: press_home()", [{"action_type": "navigate_home"}], [("home",)]),
        ([], "Action: press_back()", [{"action_type": "navigate_back"}], [("back",)]),
        ([], "Action: wait()", [{"action_type": "wait"}], []),
        ([], "Action: hotkey(key='enter')", [{"action_type": "keyboard_enter"}], [("enter",)]),
        ([], "Action: finished(content='12')",
         [{"action_type": "answer", "text": "12"}, {"action_type": "status", "goal_status": "complete"}], []),
        ([], "Action: call_user()", [{"action_type": "status", "goal_status": "infeasible"}], []),
    ],
)  # fmt: skip
def test_every_action_reaches_the_device_as_the_model_asked(fakes, before, response, steps, sent):
    env = build()
    start(env, "ContactsAddContact")
    for text in before:
        env.step(text)
    done_before = len(env.device.phone.requests)
    result = env.step(response)
    assert result.info["action_valid"], result.info["error"]
    assert result.info["json_actions"] == steps
    if sent is not None:
        assert adb(env.device)[done_before:] == sent  # what reached the device
    env.close()


def test_typed_text_reaches_the_field_without_an_extra_enter(fakes):
    env = build()
    start(env, "ContactsAddContact")
    env.step(CLICK_FIELD)
    env.step("Action: type(content='it\'s \"Ada\" & co')")
    assert env.device.field_text == 'it\'s "Ada" & co' and env.device.phone.enters == 0
    env.step("Action: type(content='\n')")
    assert env.device.phone.enters == 1
    env.close()


def test_scroll_uses_the_elements_the_model_saw(fakes):
    """AndroidWorld resolves an element index against a fresh element list; the adapter swipes in
    the box of the element that was on the observed screen, even if the list re-orders."""
    env = build()
    start(env, "ContactsAddContact")
    env.device.phone.elements_changed = True  # the live list is now in another order
    done_before = len(env.device.phone.requests)
    env.step("Action: scroll(start_box='(800,1500)', direction='down')")
    assert adb(env.device)[done_before:] == [("swipe", 800, 1400, 800, 1000)]
    env.close()


@pytest.mark.parametrize(
    "response, reason",
    [
        ("click the switch", "no 'Action:'"),
        ("Action: click(start_box='(1200,20)')", "outside the screen"),
        ("Action: hotkey(key='ctrl c')", "only enter"),
        ("Action: right_single(start_box='(10,20)')", "no AndroidWorld equivalent"),
        ("Action: hover(start_box='(10,20)')", "no AndroidWorld equivalent"),
        ("Action: drag(start_box='(10,20)', end_box='(10,20)')", "same point"),
        ("Action: click(start_box=(" + "9" * 400 + ",5))", "out of range"),
    ],
)
def test_malformed_or_impossible_output_costs_a_turn_without_touching_the_device(fakes, response, reason):
    env = build()
    _, obs = start(env, "SystemWifiTurnOn")
    result = env.step(response)
    assert result.info["action_valid"] is False and reason in result.info["error"]
    assert env.device.executed == [] and env.device.phone.requests == [] and result.observation is obs and result.info["steps"] == 1
    env.close()


def test_type_uses_the_last_tap_when_no_field_reports_focus(fakes):
    env = build()
    start(env, "ContactsAddContact")
    env.device.phone.ui_elements = lambda: []  # the screen reports no elements (as some apps do)
    env.step("Action: click(start_box='(300,650)')")  # inside the field: the phone focuses it
    result = env.step("Action: type(content='Ada')")
    assert result.info["json_actions"] == [{"action_type": "click", "x": 300, "y": 650}, {"adb": "type", "text": "Ada"}]
    assert env.device.field_text == "Ada"
    env.close()


def test_scores(fakes):
    env = build()
    task, _ = start(env, "ContactsAddContact")
    env.step(CLICK_FIELD)
    env.step(f"Action: type(content='{task.config['params']['name']}')")
    env.step("Action: finished()")
    assert env.evaluate() == 1.0

    start(env, "RetroPlaylistCount")  # information retrieval: the answer is scored
    count = env.tasks("train")[[t.family for t in env.tasks("train")].index("RetroPlaylistCount")].config["params"]["count"]
    env.step(f"Action: finished(content='{count}')")
    assert env.device.interaction_cache == str(count) and env.evaluate() == 1.0

    start(env, "ClockTimerEntry")  # partial credit: 0.5 per condition
    env.step("Action: open_app(app_name='Clock')")
    env.step("Action: finished()")
    assert env.evaluate() == 0.5
    env.close()


def test_success_counts_only_if_the_agent_ended_the_episode(fakes):
    env = build(max_steps=1)
    task = next(t for t in env.tasks("train") if t.family == "SystemWifiTurnOn")
    for requires_done, expected in ((True, 0.0), (False, 1.0)):
        env.score_requires_done = requires_done
        env.reset(task)
        result = env.step("Action: click(start_box='(950,350)')")
        for _ in range(9):  # the task's budget is int(10 * 1) = 10 steps
            assert not result.done
            result = env.step("Action: wait()")
        assert result.done and result.info["ended_by"] == "budget" and env.device.wifi_on
        assert env.evaluate() == expected
    env.close()


def test_a11y_observation_lists_the_ui_elements(fakes):
    env = build(observation="both")
    _, obs = start(env, "SystemWifiTurnOn")
    assert obs.a11y.splitlines()[1] == "1: Switch 'Wi-Fi' at (950, 350)"
    assert "[editable]" in obs.a11y and "[scrollable]" in obs.a11y
    env.close()


def test_snapshot_is_not_supported_and_episodes_need_a_reset(fakes):
    env = build()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("Action: wait()")
    with pytest.raises(NotImplementedError, match="supports_snapshot=False"):
        env.snapshot()
    with pytest.raises(NotImplementedError, match="aug_reward=equivalence"):
        env.restore(None)
