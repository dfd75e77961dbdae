"""OSWorldEnv against the strict fake `desktop_env` package (tests/fakes), no VM."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from steprl.envs import MissingDependencyError, make
from steprl.envs.osworld.env import call_with_timeout
from steprl.envs.osworld.tasks import read_index

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"
SCREEN = (280, 168)  # small VM screen; multiples of 28, so absolute coordinates are the identity


def _task(domain: str, task_id: str, instruction: str, evaluator: dict) -> dict:
    """A task JSON with every key OSWorld's tasks have."""
    return {"id": task_id, "snapshot": domain, "instruction": instruction, "source": "https://example.org",
            "config": [{"type": "launch", "parameters": {"command": ["true"]}}], "related_apps": [domain],
            "evaluator": evaluator, "proxy": False, "fixed_ip": False, "possibility_of_env_change": "low"}  # fmt: skip


TASKS = {
    ("os", "a1"): _task("os", "a1", "Click the middle of the screen.", {
        "func": "fake_commands_include", "result": {"type": "vm_command_line"},
        "expected": {"type": "rule", "rules": {"include": ["pyautogui.click(140, 84"], "exclude": []}}}),
    ("chrome", "b2"): _task("chrome", "b2", "Book a flight to the moon.", {"func": "infeasible"}),
    ("vs_code", "c3"): _task("vs_code", "c3", "Half done.", {
        "func": ["fake_fraction", "fake_fraction"], "conj": "and",
        "expected": [{"type": "rule"}, {"type": "rule"}], "options": [{"value": 0.5}, {"value": 1.0}]}),
    ("multi_apps", "d4"): _task("multi_apps", "d4", "Copy a table into a document.", {"func": "fake_fraction", "options": {"value": 0.0}}),
}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch):
    """Put the fake desktop_env on sys.path; forget it afterwards."""
    monkeypatch.syspath_prepend(str(FAKES))
    yield
    for name in [n for n in sys.modules if n == "desktop_env" or n.startswith("desktop_env.")]:
        del sys.modules[name]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A small OSWorld checkout: evaluation_examples/examples/<domain>/<id>.json + index files."""
    examples = tmp_path / "evaluation_examples" / "examples"
    for (domain, task_id), data in TASKS.items():
        (examples / domain).mkdir(parents=True, exist_ok=True)
        (examples / domain / f"{task_id}.json").write_text(json.dumps(data))
    index = {"os": ["a1"], "chrome": ["b2"], "vs_code": ["c3"], "multi_apps": ["d4"]}
    (tmp_path / "evaluation_examples" / "test_all.json").write_text(json.dumps(index))
    (tmp_path / "train_subset.txt").write_text("# the training subset\nos/a1\n\nb2   # a bare id is looked up\n")
    return tmp_path


def build(checkout: Path, **overrides):
    kwargs = dict(osworld_root=str(checkout), screen_size=list(SCREEN), coords="absolute", model_image_size=list(SCREEN),
                  sleep_after_reset_s=0.0, sleep_before_evaluate_s=0.0, pause_s=0.25)  # fmt: skip
    kwargs.update(overrides)
    return make("osworld", **kwargs)


def by_id(env, split: str, task_id: str):
    return next(t for t in env.tasks(split) if t.id == task_id)


# ------------------------------------------------------------------------------------------ building
def test_the_fake_is_strict(fakes):
    """The adapter tests mean something only if wrong calls fail: positional arguments, a list
    screen size, an unknown provider, reset without the task_config keyword, pause by position."""
    from desktop_env.desktop_env import DesktopEnv

    with pytest.raises(TypeError):
        DesktopEnv("docker")
    with pytest.raises(TypeError, match="screen_size"):
        DesktopEnv(screen_size=[280, 168])
    with pytest.raises(TypeError, match="provider_name"):
        DesktopEnv(provider_name="qemu")
    desktop = DesktopEnv(screen_size=SCREEN)
    with pytest.raises(TypeError):
        desktop.reset(TASKS[("os", "a1")])
    desktop.reset(task_config=TASKS[("os", "a1")])
    with pytest.raises(TypeError):
        desktop.step("WAIT", 0.5)
    with pytest.raises(TypeError, match="unexpected call"):
        desktop.step("import os; os.system('true')", pause=0)


def test_config_file_builds_without_starting_a_vm(fakes, checkout):
    from desktop_env.desktop_env import DesktopEnv

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "env" / "osworld.yaml"), resolve=True)
    assert cfg.pop("name") == "osworld"
    cfg["osworld_root"] = str(checkout)
    booted = DesktopEnv.instances_created
    env = make("osworld", **cfg)
    assert env.desktop is None and env.screen_size == (1920, 1080) and env.supports_snapshot is False
    assert [t.id for t in env.tasks("test")] == ["os/a1", "chrome/b2", "vs_code/c3", "multi_apps/d4"]
    assert [t.id for t in env.tasks("train")] == [t.id for t in env.tasks("test")]  # train_index null -> test index
    env.close()
    assert DesktopEnv.instances_created == booted


def test_task_schema(fakes, checkout):
    env = build(checkout, train_index="train_subset.txt")
    train = env.tasks("train")
    assert [t.id for t in train] == ["os/a1", "chrome/b2"]
    a1, b2 = train
    assert (a1.family, a1.instruction, a1.split, a1.feasible, a1.difficulty) == ("os", "Click the middle of the screen.", "train", True, 3)
    assert a1.config == {"domain": "os", "task": TASKS[("os", "a1")]}
    assert b2.feasible is False  # evaluator func "infeasible"
    assert by_id(env, "test", "multi_apps/d4").difficulty == 5


def test_index_formats(checkout):
    (checkout / "list.json").write_text(json.dumps(["os/a1", "b2"]))
    assert read_index(checkout / "list.json") == [("os", "a1"), (None, "b2")]
    assert read_index(checkout / "evaluation_examples" / "test_all.json")[:2] == [("os", "a1"), ("chrome", "b2")]
    assert read_index(checkout / "train_subset.txt") == [("os", "a1"), (None, "b2")]
    with pytest.raises(FileNotFoundError, match="train_index"):
        read_index(checkout / "nope.json")


def test_bad_task_files_give_one_clear_message(fakes, checkout):
    (checkout / "missing.txt").write_text("os/zz\n")
    with pytest.raises(FileNotFoundError, match="os/zz"):
        build(checkout, train_index="missing.txt").tasks("train")
    (checkout / "evaluation_examples" / "examples" / "os" / "bad.json").write_text(json.dumps({"id": "bad", "instruction": "x"}))
    (checkout / "bad.txt").write_text("os/bad\n")
    with pytest.raises(ValueError, match="bad.json.*evaluator"):
        build(checkout, train_index="bad.txt").tasks("train")
    with pytest.raises(ValueError, match="osworld_root"):
        make("osworld", osworld_root=None)
    with pytest.raises(FileNotFoundError, match="git clone https://github.com/xlang-ai/OSWorld"):
        make("osworld", osworld_root=str(checkout / "not-a-checkout"))


def test_domains_filter(fakes, checkout):
    env = build(checkout, domains=["chrome", "vs_code"])
    assert [t.id for t in env.tasks("test")] == ["chrome/b2", "vs_code/c3"]
    assert [t.id for t in build(checkout, train_index="train_subset.txt", domains=["chrome"]).tasks("train")] == ["chrome/b2"]


def test_missing_package_names_the_install_command(monkeypatch, checkout):
    for name in ["desktop_env"] + [n for n in sys.modules if n.startswith("desktop_env.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import desktop_env(.x) -> ModuleNotFoundError
    with pytest.raises(MissingDependencyError, match="pip install desktop-env"):
        make("osworld", osworld_root=str(checkout))


# ------------------------------------------------------------------------------------------ episodes
def test_reset_step_evaluate_close_round_trip(fakes, checkout):
    env = build(checkout)
    task = by_id(env, "test", "os/a1")
    obs = env.reset(task)
    desktop = env.desktop
    assert desktop.provider_name == "docker" and desktop.screen_size == SCREEN and desktop.action_space == "pyautogui"
    assert desktop.headless is True and desktop.require_a11y_tree is False and desktop.resets == 1
    assert desktop.task_id == "a1"  # reset(task_config=<the task JSON>)
    assert obs.screenshot.dtype == np.uint8 and obs.screenshot.shape == (SCREEN[1], SCREEN[0], 3)
    assert tuple(obs.screenshot[0, 0]) == (0, 128, 255)  # the fake's PNG, decoded to RGB
    assert obs.instruction == task.instruction and obs.a11y is None
    png = desktop._get_obs()["screenshot"]
    assert obs.state_hash == hashlib.sha1(png).hexdigest()[:16]  # hash of the screenshot bytes

    result = env.step("Thought: the middle.\nAction: click(start_box='(140,84)')")
    assert result.info["action_valid"] and result.info["code"] == "pyautogui.click(140, 84, button='left')"
    assert result.done is False and result.info["osworld_info"] == {} and desktop.pauses == [0.25]
    assert result.observation.state_hash != obs.state_hash  # the screen changed
    finish = env.step("Action: finished(content='done')")
    assert finish.done and finish.info["ended_by"] == "finished" and desktop.action_history[-1] == "DONE"
    assert finish.info["osworld_info"] == {"done": True}
    score = env.evaluate()
    assert isinstance(score, float) and score == 1.0 and desktop.evaluations == 1
    after = env.step("Action: wait()")
    assert after.done and not after.info["action_valid"]  # the episode is over
    env.close()
    assert desktop.closed and env.desktop is None
    env.close()  # idempotent


def test_one_vm_per_env_reused_across_resets(fakes, checkout):
    from desktop_env.desktop_env import DesktopEnv

    env = build(checkout)
    booted = DesktopEnv.instances_created
    env.reset(by_id(env, "test", "os/a1"))
    first = env.desktop
    env.reset(by_id(env, "test", "chrome/b2"))
    assert env.desktop is first and first.resets == 2 and DesktopEnv.instances_created == booted + 1
    env.close()


@pytest.mark.parametrize(
    "response, sent",
    [
        ("Action: click(start_box='(10,20)')", "pyautogui.click(10, 20, button='left')"),
        ("Action: left_double(start_box='(10,20)')", "pyautogui.doubleClick(10, 20, button='left')"),
        ("Action: right_single(start_box='(10,20)')", "pyautogui.click(10, 20, button='right')"),
        ("Action: hover(start_box='(10,20)')", "pyautogui.moveTo(10, 20)"),
        ("Action: drag(start_box='(10,20)', end_box='(30,40)')",
         "pyautogui.moveTo(10, 20)\npyautogui.dragTo(30, 40, duration=0.5, button='left')"),
        ("Action: hotkey(key='ctrl c')", "pyautogui.hotkey('ctrl', 'c')"),
        ("Action: press(key='enter')", "pyautogui.press('enter')"),
        ("Action: keydown(key='shift')", "pyautogui.keyDown('shift')"),
        ("Action: keyup(key='shift')", "pyautogui.keyUp('shift')"),
        ("Action: type(content='hi\\n')", "pyautogui.write('hi', interval=0.02)\npyautogui.press('enter')"),
        ("Action: scroll(start_box='(10,20)', direction='down')", "pyautogui.scroll(-5, x=10, y=20)"),
        ("Action: scroll(start_box='(10,20)', direction='up')", "pyautogui.scroll(5, x=10, y=20)"),
        ("Action: scroll(direction='left')", "pyautogui.hscroll(-5)"),
        ("Action: long_press(start_box='(10,20)')",
         "pyautogui.mouseDown(10, 20)\ntime.sleep(1)\npyautogui.mouseUp(10, 20)"),
        ("Action: wait()", "WAIT"),
        ("Action: finished()", "DONE"),
        ("Action: call_user()", "FAIL"),
    ],
)
def test_every_action_type_reaches_the_vm_as_osworld_expects(fakes, checkout, response, sent):
    env = build(checkout)
    env.reset(by_id(env, "test", "os/a1"))
    result = env.step(response)
    assert result.info["action_valid"], result.info["error"]
    assert env.desktop.action_history == [sent]
    assert result.done is (sent in ("DONE", "FAIL"))
    env.close()


@pytest.mark.parametrize(
    "response, reason",
    [
        ("I would click the button", "no 'Action:'"),
        ("Action: click(start_box='(10,20)'", "truncated"),
        ("Action: click(start_box='(900,20)')", "outside the screen"),
        ("Action: press_home()", "mobile action"),
        ("Action: __import__('os').system('true')", "unexpected text after the action"),
    ],
)
def test_malformed_output_costs_a_turn_without_touching_the_vm(fakes, checkout, response, reason):
    env = build(checkout, max_steps=2)
    obs = env.reset(by_id(env, "test", "os/a1"))
    result = env.step(response)
    assert result.info["action_valid"] is False and reason in result.info["error"]
    assert env.desktop.action_history == [] and result.observation is obs and result.info["steps"] == 1
    assert not result.done
    assert env.step(response).done and env.step(response).info["ended_by"] == "budget"  # the turns count
    env.close()


def test_infeasible_tasks_are_scored_as_osworld_does(fakes, checkout):
    env = build(checkout)
    impossible, possible = by_id(env, "test", "chrome/b2"), by_id(env, "test", "os/a1")
    env.reset(impossible)
    env.step("Action: call_user()")
    assert env.evaluate() == 1.0  # FAIL on an infeasible task is right
    env.reset(impossible)
    env.step("Action: finished()")
    assert env.evaluate() == 0.0
    env.reset(possible)
    env.step("Action: click(start_box='(140,84)')")
    env.step("Action: call_user()")
    assert env.evaluate() == 0.0  # giving up on a feasible task scores 0 even after the right click
    env.close()


def test_partial_scores_pass_through(fakes, checkout):
    env = build(checkout)
    env.reset(by_id(env, "test", "vs_code/c3"))
    env.step("Action: finished()")
    # conj "and" over metric values 0.5 and 1.0: none is 0, so the mean (0.5 + 1.0) / 2 = 0.75
    assert env.evaluate() == pytest.approx(0.75)
    env.close()


def test_a11y_observations(fakes, checkout):
    env = build(checkout, observation="both")
    obs = env.reset(by_id(env, "test", "os/a1"))
    assert env.desktop.require_a11y_tree is True and obs.a11y == "<desktop commands='0'/>"
    env.close()


def test_screen_size_mismatch_says_what_to_set(fakes, checkout, monkeypatch):
    env = build(checkout)
    env.reset(by_id(env, "test", "os/a1"))
    env.desktop.screen_size = (336, 168)  # the VM's real resolution differs from the config
    with pytest.raises(ValueError, match=r"env.screen_size=\[336,168\]"):
        env.step("Action: wait()")
    env.close()


def test_missing_screenshot_is_an_env_error(fakes, checkout, monkeypatch):
    env = build(checkout)
    env.reset(by_id(env, "test", "os/a1"))
    monkeypatch.setattr(env.desktop, "_get_obs", lambda: {"screenshot": None, "accessibility_tree": None})
    with pytest.raises(RuntimeError, match="no screenshot"):
        env.step("Action: wait()")
    env.close()


def test_snapshot_is_not_supported_and_episodes_need_a_reset(fakes, checkout):
    env = build(checkout)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("Action: wait()")
    with pytest.raises(RuntimeError, match="reset"):
        env.evaluate()
    with pytest.raises(NotImplementedError, match="supports_snapshot=False"):
        env.snapshot()
    with pytest.raises(NotImplementedError, match="aug_reward=equivalence"):
        env.restore(None)


def test_call_with_timeout_reports_and_cleans_up_late_results():
    assert call_with_timeout(lambda: 7, 1.0, "reset") == 7
    assert call_with_timeout(lambda: 8, None, "reset") == 8
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, 1.0, "reset")
    late: list[str] = []

    def slow_boot() -> str:
        time.sleep(0.2)
        return "vm"

    with pytest.raises(TimeoutError, match="start_timeout_s"):
        call_with_timeout(slow_boot, 0.02, "start", on_late=late.append)
    deadline = time.monotonic() + 2.0
    while not late and time.monotonic() < deadline:
        time.sleep(0.01)
    assert late == ["vm"]  # the VM that booted too late is handed over to be closed
