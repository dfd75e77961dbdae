"""OSWorldEnv against the REAL published `desktop_env` (PyPI desktop-env, installed with --no-deps by
`pip install --no-deps -r requirements/osworld.txt`): DesktopEnv, PythonController and
SetupController run as released; only the VM (provider + the VM's HTTP server) and, where their
heavy extras are not installed, the evaluator modules are replaced (tests/fakes/osworld_vm.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from steprl.envs import MissingDependencyError, make
from steprl.envs.osworld.tasks import needs_credentials, read_index
from steprl.errors import ConfigError

pytest.importorskip("desktop_env", reason="desktop-env is not installed: pip install --no-deps -r requirements/osworld.txt")
from tests.fakes import osworld_vm  # noqa: E402  (after the skip: it imports desktop_env)

ROOT = Path(__file__).resolve().parents[2]
SCREEN = osworld_vm.SCREEN
XLSX_URL = "https://huggingface.co/datasets/xlangai/ubuntu_osworld_file_cache/resolve/main/libreoffice_calc/e1/sales.xlsx"
XLSX_BYTES = b"PK\x03\x04 a whole spreadsheet, byte for byte " * 8
GOLD_URL = "https://huggingface.co/datasets/xlangai/ubuntu_osworld_file_cache/resolve/main/libreoffice_calc/e1/gold.xlsx"


def _task(domain: str, task_id: str, instruction: str, config: list, evaluator: dict) -> dict:
    """A task JSON with every key OSWorld's own task files have."""
    return {"id": task_id, "snapshot": domain, "instruction": instruction, "source": "https://support.example.org/" + task_id,
            "config": config, "trajectory": "trajectories/", "related_apps": [domain], "evaluator": evaluator,
            "proxy": False, "fixed_ip": False, "possibility_of_env_change": "low"}  # fmt: skip


LAUNCH_TERMINAL = {"type": "launch", "parameters": {"command": ["gnome-terminal"]}}
TASKS = {
    ("os", "5ea617a3-0e86-4ba6-aab2-dac9aa2e8d57"): _task(
        "os", "5ea617a3-0e86-4ba6-aab2-dac9aa2e8d57", "Click the middle of the screen.", [LAUNCH_TERMINAL],
        {"func": "check_include_exclude", "result": {"type": "vm_command_line", "command": "true"},
         "expected": {"type": "rule", "rules": {"include": ["pyautogui.click(140, 84"], "exclude": []}}}),
    # infeasible: OSWorld's right answer is FAIL (call_user)
    ("chrome", "a96b564e-2d0b-4d5a-8d66-0bd4dd1bfd20"): _task(
        "chrome", "a96b564e-2d0b-4d5a-8d66-0bd4dd1bfd20", "Book me a flight to the moon in Chrome.",
        [{"type": "launch", "parameters": {"command": ["google-chrome", "--remote-debugging-port=1337"]}}],
        {"func": "infeasible"}),
    # a file downloaded into the task cache at set-up, a gold file fetched at evaluation
    ("libreoffice_calc", "e1"): _task(
        "libreoffice_calc", "e1", "Sum column B into B10.",
        [{"type": "download", "parameters": {"files": [{"url": XLSX_URL, "path": "/home/user/sales.xlsx"}]}},
         {"type": "open", "parameters": {"path": "/home/user/sales.xlsx"}}],
        {"func": "compare_bytes", "result": {"type": "cloud_file", "path": GOLD_URL, "dest": "gold.xlsx"},
         "expected": {"type": "rule", "rules": {"bytes": "gold"}}}),
    # needs the user's Google Drive credentials (evaluation_examples/settings/googledrive/settings.yml)
    ("multi_apps", "897e3b53-5d4d-444b-85cb-2cdc8a97d903"): _task(
        "multi_apps", "897e3b53-5d4d-444b-85cb-2cdc8a97d903", "Upload the report to my Google Drive folder 'work'.",
        [{"type": "googledrive", "parameters": {"settings_file": "evaluation_examples/settings/googledrive/settings.yml",
                                                "operation": ["delete"], "args": [{"query": "title = 'work'", "trash": False}]}},
         LAUNCH_TERMINAL],
        {"func": "compare_pdfs", "result": {"type": "googledrive_file", "settings_file": "evaluation_examples/settings/googledrive/settings.yml",
                                            "path": ["work", "report.pdf"], "dest": "report.pdf"},
         "expected": {"type": "cloud_file", "path": "https://example.org/report.pdf", "dest": "gold_report.pdf"}}),
    ("multi_apps", "m5"): _task("multi_apps", "m5", "Copy a table into a document.", [LAUNCH_TERMINAL],
                                {"func": "infeasible"}),
}  # fmt: skip
OS_TASK = "os/5ea617a3-0e86-4ba6-aab2-dac9aa2e8d57"
INFEASIBLE = "chrome/a96b564e-2d0b-4d5a-8d66-0bd4dd1bfd20"
DRIVE_TASK = "multi_apps/897e3b53-5d4d-444b-85cb-2cdc8a97d903"


@pytest.fixture
def vm(monkeypatch: pytest.MonkeyPatch) -> osworld_vm.VMServer:
    """The real desktop_env with the VM replaced; requests.get/post restored afterwards."""
    osworld_vm.install_stand_ins()
    server = osworld_vm.VMServer(files={XLSX_URL: XLSX_BYTES, GOLD_URL: b"gold"}).install(monkeypatch)
    import desktop_env.desktop_env as module

    monkeypatch.setattr(module, "create_vm_manager_and_provider", lambda name, region, use_proxy=False: (osworld_vm.Manager(), osworld_vm.Provider(region)))
    monkeypatch.setattr(osworld_vm.Provider, "signal_on_start", False)
    osworld_vm.Provider.events.clear()
    return server


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A small OSWorld checkout: evaluation_examples/examples/<domain>/<id>.json + index files."""
    examples = tmp_path / "evaluation_examples" / "examples"
    index: dict[str, list[str]] = {}
    for (domain, task_id), data in TASKS.items():
        (examples / domain).mkdir(parents=True, exist_ok=True)
        (examples / domain / f"{task_id}.json").write_text(json.dumps(data))
        index.setdefault(domain, []).append(task_id)
    (tmp_path / "evaluation_examples" / "test_all.json").write_text(json.dumps(index))
    (tmp_path / "train_subset.txt").write_text(f"# the training subset\n{OS_TASK}\n\n{INFEASIBLE.split('/')[1]}   # a bare id\n")
    return tmp_path


def build(checkout: Path, **overrides):
    kwargs = dict(osworld_root=str(checkout), screen_size=list(SCREEN), coords="absolute", model_image_size=list(SCREEN),
                  sleep_after_reset_s=0.0, sleep_before_evaluate_s=0.0, pause_s=0.0, cache_dir=str(checkout / "cache"))  # fmt: skip
    kwargs.update(overrides)
    return make("osworld", **kwargs)


def by_id(env, split: str, task_id: str):
    return next(t for t in env.tasks(split) if t.id == task_id)


def python_commands(server: osworld_vm.VMServer) -> list[str]:
    """The pyautogui code of each /execute call, without PythonController's prefix."""
    prefix = "import pyautogui; import time; pyautogui.FAILSAFE = False; "
    return [c[2][len(prefix) :] for c in server.executed if c[:2] == ["python", "-c"]]


# ------------------------------------------------------------------------------------------ building
def test_config_file_builds_without_starting_a_vm(vm, checkout):
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "env" / "osworld.yaml"), resolve=True)
    assert cfg.pop("name") == "osworld"
    cfg["osworld_root"] = str(checkout)
    env = make("osworld", **cfg)
    assert env.desktop is None and env.screen_size == (1920, 1080) and env.supports_snapshot is False
    assert env.multi_action == "all" and env.wait_s == 5.0 and env.exclude_credential_tasks is True
    assert DRIVE_TASK not in [t.id for t in env.tasks("test")]
    env.close()
    assert osworld_vm.Provider.events == []  # nothing was started


def test_task_schema(vm, checkout):
    env = build(checkout, train_index="train_subset.txt")
    train = env.tasks("train")
    assert [t.id for t in train] == [OS_TASK, INFEASIBLE]
    a1, b2 = train
    assert (a1.family, a1.instruction, a1.split, a1.feasible, a1.difficulty) == ("os", "Click the middle of the screen.", "train", True, 3)
    assert a1.config == {"domain": "os", "task": TASKS[tuple(OS_TASK.split("/"))]}
    assert b2.feasible is False  # evaluator func "infeasible"
    assert by_id(env, "test", "multi_apps/m5").difficulty == 5


def test_tasks_that_need_google_credentials_are_left_out_and_counted(vm, checkout, caplog):
    assert needs_credentials(TASKS[tuple(DRIVE_TASK.split("/"))])
    assert not any(needs_credentials(t) for k, t in TASKS.items() if "/".join(k) != DRIVE_TASK)
    with caplog.at_level(logging.WARNING, logger="steprl.envs.osworld.env"):
        env = build(checkout)
        ids = [t.id for t in env.tasks("test")]
    assert DRIVE_TASK not in ids and len(ids) == len(TASKS) - 1
    assert env.excluded["test"] == [DRIVE_TASK]
    assert "1 of 5 tasks left out because their set-up needs Google Drive credentials" in caplog.text
    assert DRIVE_TASK in [t.id for t in build(checkout, exclude_credential_tasks=False).tasks("test")]


def test_index_formats(checkout):
    (checkout / "list.json").write_text(json.dumps([OS_TASK, "e1"]))
    assert read_index(checkout / "list.json") == [tuple(OS_TASK.split("/")), (None, "e1")]
    assert read_index(checkout / "train_subset.txt")[1] == (None, INFEASIBLE.split("/")[1])
    with pytest.raises(FileNotFoundError, match="train_index"):
        read_index(checkout / "nope.json")


def test_bad_settings_give_one_clear_message(vm, checkout):
    (checkout / "missing.txt").write_text("os/zz\n")
    with pytest.raises(FileNotFoundError, match="os/zz"):
        build(checkout, train_index="missing.txt").tasks("train")
    with pytest.raises(ValueError, match="osworld_root"):
        make("osworld", osworld_root=None)
    with pytest.raises(FileNotFoundError, match="git clone https://github.com/xlang-ai/OSWorld"):
        make("osworld", osworld_root=str(checkout / "not-a-checkout"))
    with pytest.raises(ConfigError, match="rollout.collector.reset_timeout_s"):
        build(checkout, reset_timeout_s=900)
    with pytest.raises(ConfigError, match="env.multi_action"):
        build(checkout, multi_action="some")


def test_missing_package_names_the_install_command(monkeypatch, checkout):
    for name in ["desktop_env"] + [n for n in sys.modules if n.startswith("desktop_env.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import desktop_env(.x) -> ModuleNotFoundError
    with pytest.raises(MissingDependencyError, match="requirements/osworld.txt"):
        make("osworld", osworld_root=str(checkout))


# ------------------------------------------------------------------------------------------ episodes
def test_reset_step_evaluate_close_through_the_real_desktop_env(vm, checkout):
    from desktop_env.desktop_env import DesktopEnv

    env = build(checkout, exclude_credential_tasks=False)
    task = by_id(env, "test", OS_TASK)
    obs = env.reset(task)
    desktop = env.desktop
    assert isinstance(desktop, DesktopEnv) and osworld_vm.Provider.events == ["start vm-image-1"]
    assert (desktop.provider_name, desktop.action_space, desktop.screen_width, desktop.require_a11y_tree) == ("docker", "pyautogui", SCREEN[0], False)
    assert desktop.task_id == "5ea617a3-0e86-4ba6-aab2-dac9aa2e8d57" and vm.launched == [["gnome-terminal"]]  # the task's set-up ran
    assert obs.screenshot.dtype == np.uint8 and obs.screenshot.shape == (SCREEN[1], SCREEN[0], 3)
    assert obs.instruction == task.instruction and obs.a11y is None
    assert obs.state_hash == hashlib.sha1(osworld_vm.png(0)).hexdigest()[:16]  # hash of the screenshot bytes

    result = env.step("Thought: the middle.\nAction: click(start_box='(140,84)')")
    assert result.info["action_valid"] and python_commands(vm) == ["pyautogui.click(140, 84, button='left')"]
    assert result.done is False and result.observation.state_hash != obs.state_hash  # the screen changed
    finish = env.step("Action: finished(content='done')")
    assert finish.done and finish.info["ended_by"] == "finished" and desktop.action_history[-1] == "DONE"
    assert finish.info["osworld_info"] == {"done": True}
    assert env.evaluate() == 1.0  # check_include_exclude saw the click
    after = env.step("Action: wait()")
    assert after.done and not after.info["action_valid"]  # the episode is over
    env.close()
    assert osworld_vm.Provider.events[-1] == "stop vm-image-1" and env.desktop is None
    env.close()  # idempotent
    assert osworld_vm.Provider.events.count("stop vm-image-1") == 1


def test_one_vm_per_env_reused_across_resets(vm, checkout):
    env = build(checkout)
    env.reset(by_id(env, "test", OS_TASK))
    first = env.desktop
    env.step("Action: click(start_box='(1,1)')")
    env.reset(by_id(env, "test", INFEASIBLE))
    assert env.desktop is first and osworld_vm.Provider.events.count("start vm-image-1") == 2  # DesktopEnv restarts after a revert
    assert "revert init_state" in osworld_vm.Provider.events
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
        ("Action: scroll(start_box='(10,20)', direction='down')", "pyautogui.scroll(-5, x=10, y=20)"),
        ("Action: scroll(direction='left')", "pyautogui.hscroll(-5)"),
        ("Action: long_press(start_box='(10,20)')", "pyautogui.mouseDown(10, 20)\ntime.sleep(1)\npyautogui.mouseUp(10, 20)"),
        ("Action: wait()", "WAIT"),
        ("Action: finished()", "DONE"),
        ("Action: call_user()", "FAIL"),
    ],
)  # fmt: skip
def test_every_action_type_reaches_the_vm_as_osworld_expects(vm, checkout, response, sent, monkeypatch):
    import desktop_env.desktop_env as module

    monkeypatch.setattr(module.time, "sleep", lambda s: None)
    env = build(checkout)
    env.reset(by_id(env, "test", OS_TASK))
    result = env.step(response)
    assert result.info["action_valid"], result.info["error"]
    assert env.desktop.action_history == [sent]
    assert python_commands(vm) == ([] if sent in ("WAIT", "DONE", "FAIL") else [sent])
    assert result.done is (sent in ("DONE", "FAIL"))
    env.close()


def test_wait_waits_what_the_prompt_promises(vm, checkout, monkeypatch):
    """The prompt says wait() sleeps 5 s; DesktopEnv.step('WAIT', pause) sleeps `pause` twice."""
    import desktop_env.desktop_env as module

    slept: list[float] = []
    monkeypatch.setattr(module.time, "sleep", slept.append)
    env = build(checkout, pause_s=0.5)
    env.reset(by_id(env, "test", OS_TASK))
    slept.clear()
    env.step("Action: wait()")
    assert sum(slept) == pytest.approx(5.0)
    slept.clear()
    env.step("Action: click(start_box='(1,1)')")
    assert sum(slept) == pytest.approx(0.5)  # other actions: pause_s
    env.close()
    env = build(checkout, wait_s=2.0)
    env.reset(by_id(env, "test", OS_TASK))
    slept.clear()
    env.step("Action: wait()")
    assert sum(slept) == pytest.approx(2.0)
    env.close()


@pytest.mark.parametrize("mode, expected", [("all", ["pyautogui.hotkey('ctrl', 'c')", "pyautogui.hotkey('ctrl', 'v')"]), ("first", ["pyautogui.hotkey('ctrl', 'c')"])])
def test_several_actions_in_one_response_follow_env_multi_action(vm, checkout, mode, expected):
    env = build(checkout, multi_action=mode, max_steps=3)
    env.reset(by_id(env, "test", OS_TASK))
    result = env.step("Thought: copy and paste\nAction: hotkey(key='ctrl c')\n\nhotkey(key='ctrl v')")
    assert python_commands(vm) == expected and result.info["steps"] == 1  # one turn either way
    env.step("Action: click(start_box='(1,1)')\n\nfinished()\n\nclick(start_box='(2,2)')")
    assert env.desktop.action_history[-1] == ("DONE" if mode == "all" else "pyautogui.click(1, 1, button='left')")
    env.close()


@pytest.mark.parametrize("text", ["a < b", "it's \"quoted\"", "back\\slash", "two\nlines\n", "crème brûlée", "日本語", "pyautogui.typewrite('<x>')"])
def test_typed_text_arrives_intact_through_desktop_env(vm, checkout, text):
    """The command the VM runs (after DesktopEnv's own `<` rewrite and PythonController's prefix),
    executed against recording stand-ins for pyautogui and pyperclip, types exactly the text."""
    from tests.unit.test_actions import typed_in_vm

    env = build(checkout)
    env.reset(by_id(env, "test", OS_TASK))
    env.step(f"Action: type(content={text!r})")
    (command,) = [c for c in vm.executed if c[:2] == ["python", "-c"]]
    code = command[2].replace("import pyautogui; import time; pyautogui.FAILSAFE = False; ", "")
    assert typed_in_vm(code) == text
    env.close()


@pytest.mark.parametrize(
    "response, reason",
    [
        ("I would click the button", "no 'Action:'"),
        ("Action: click(start_box='(10,20)'", "truncated"),
        ("Action: click(start_box='(900,20)')", "outside the screen"),
        ("Action: press_home()", "mobile action"),
        ("Action: click(start_box=(" + "9" * 400 + ",5))", "out of range"),
    ],
)
def test_malformed_output_costs_a_turn_without_touching_the_vm(vm, checkout, response, reason):
    env = build(checkout, max_steps=2)
    obs = env.reset(by_id(env, "test", OS_TASK))
    result = env.step(response)
    assert result.info["action_valid"] is False and reason in result.info["error"]
    assert env.desktop.action_history == [] and result.observation is obs and result.info["steps"] == 1
    assert not result.done
    assert env.step(response).done and env.step(response).info["ended_by"] == "budget"  # the turns count
    env.close()


def test_infeasible_tasks_are_scored_as_osworld_does(vm, checkout):
    env = build(checkout)
    impossible, possible = by_id(env, "test", INFEASIBLE), by_id(env, "test", OS_TASK)
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


def test_a11y_tree_is_linearised_and_cut_to_the_configured_size(vm, checkout):
    nodes = "".join(
        f'<push-button xmlns:cp="https://accessibility.ubuntu.example.org/ns/component" name="Button {i}" '
        f'cp:screencoord="({i}, 10)" cp:size="(20, 10)"/>'
        for i in range(5000)
    )
    vm.a11y = f'<desktop-frame name="main">{nodes}<filler/></desktop-frame>'
    assert len(vm.a11y) > 400_000  # what the VM sends
    env = build(checkout, observation="both", a11y_max_chars=2000)
    obs = env.reset(by_id(env, "test", OS_TASK))
    lines = obs.a11y.splitlines()
    assert env.desktop.require_a11y_tree is True and len(obs.a11y) <= 2000 + 100
    assert lines[0] == "tag\tname\ttext\tposition\tsize" and lines[2] == "push-button\tButton 0\t\t(0, 10)\t(20, 10)"
    assert lines[-1].startswith("[... ") and "env.a11y_max_chars=2000" in lines[-1]
    env.close()


def test_screen_size_mismatch_says_what_to_set(vm, checkout):
    env = build(checkout, screen_size=[336, 168], model_image_size=[336, 168])
    with pytest.raises(ValueError, match=r"env.screen_size=\[280,168\]"):
        env.reset(by_id(env, "test", OS_TASK))
    env.close()


def test_snapshot_is_not_supported_and_episodes_need_a_reset(vm, checkout):
    env = build(checkout)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("Action: wait()")
    with pytest.raises(NotImplementedError, match="supports_snapshot=False"):
        env.snapshot()


# ------------------------------------------------------------------------------------------ item 2
def test_a_cloud_provider_that_sets_signal_handlers_starts_in_the_main_thread(vm, checkout, monkeypatch):
    monkeypatch.setattr(osworld_vm.Provider, "signal_on_start", True)
    env = build(checkout, provider_name="aws")  # DesktopEnv itself accepts aws
    env.reset(by_id(env, "test", OS_TASK))  # no "signal only works in main thread"
    assert osworld_vm.Provider.events == ["start vm-image-1"]
    env.close()


def test_a_cloud_provider_in_a_worker_thread_is_refused_with_the_fix(vm, checkout, monkeypatch):
    monkeypatch.setattr(osworld_vm.Provider, "signal_on_start", True)
    env = build(checkout, provider_name="aws")
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(errors, env.reset, by_id(env, "test", OS_TASK)))
    thread.start()
    thread.join()
    assert isinstance(errors[0], ConfigError) and "rollout.pool.backend=process" in str(errors[0])


def _capture(errors: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as error:  # noqa: BLE001
        errors.append(error)


# ------------------------------------------------------------------------------------------ item 5
def test_concurrent_resets_of_one_task_never_see_a_partial_file(vm, checkout):
    """Two workers reset the same task at once with a slow download: each VM receives the whole
    file, and it is downloaded once."""
    vm.chunk_delay_s = 0.005  # 96 chunks: about half a second per download
    envs = [build(checkout), build(checkout)]
    task = by_id(envs[0], "test", "libreoffice_calc/e1")
    errors: list[BaseException] = []
    uploads: list[bytes] = []

    def reset(env) -> None:
        _capture(errors, env.reset, task)
        uploads.append(vm.uploads.get("/home/user/sales.xlsx", b""))

    threads = [threading.Thread(target=reset, args=(env,)) for env in envs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert uploads == [XLSX_BYTES, XLSX_BYTES]
    assert vm.downloads.count(XLSX_URL) == 1
    cache = checkout / "cache" / "e1"
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == sorted(
        [f"{__import__('uuid').uuid5(__import__('uuid').NAMESPACE_URL, XLSX_URL)}_sales.xlsx", "gold.xlsx"]
    )
    for env in envs:
        env.step("Action: finished()")
        assert env.evaluate() == 1.0  # the gold file was fetched whole before, not downloaded in place
        env.close()


def test_a_download_killed_half_way_leaves_nothing_under_the_final_name(vm, checkout, monkeypatch):
    from steprl.envs.osworld import cache

    class Killed(BaseException):
        pass

    original = osworld_vm.Response.iter_content

    def dies_half_way(self, chunk_size=8192):
        for i, chunk in enumerate(original(self, chunk_size)):
            if i == 10:
                raise Killed  # the worker is killed mid-download
            yield chunk

    monkeypatch.setattr(osworld_vm.Response, "iter_content", dies_half_way)
    env = build(checkout)
    task = by_id(env, "test", "libreoffice_calc/e1")
    with pytest.raises(Killed):
        env.reset(task)
    target = cache.task_files(checkout / "cache", task.config["task"])[0].path
    assert not target.exists() and list(cache.stale_partials(checkout / "cache")) == []
    monkeypatch.setattr(osworld_vm.Response, "iter_content", original)
    env.reset(task)  # the next episode downloads it whole
    assert target.read_bytes() == XLSX_BYTES and vm.uploads["/home/user/sales.xlsx"] == XLSX_BYTES
    env.close()


# ------------------------------------------------------------------------------------------ item 3
def test_a_worker_process_with_a_cloud_provider_starts_and_closes_its_vm(vm, checkout, tmp_path):
    """The real adapter in a real worker process, provider setting signal handlers at start; the op
    runs past its limit: the worker stops it and the VM is stopped before the pool would kill."""
    from steprl.envs import register
    from steprl.rollout import LocalPool

    marker = tmp_path / "stops.txt"
    register("osworld_vmless", osworld_vm.build_env)
    kwargs = dict(osworld_root=str(checkout), screen_size=list(SCREEN), model_image_size=list(SCREEN), sleep_after_reset_s=0.0,
                  sleep_before_evaluate_s=0.0, pause_s=0.0, cache_dir=str(checkout / "cache"), provider_name="aws",
                  signal_on_start=True, stop_marker=str(marker), vm={"files": {XLSX_URL: XLSX_BYTES}, "chunk_delay_s": 0.5})  # fmt: skip
    env = build(checkout)
    fast, slow = by_id(env, "test", OS_TASK), by_id(env, "test", "libreoffice_calc/e1")
    with LocalPool("osworld_vmless", kwargs, num_workers=1, close_timeout_s=30.0) as pool:
        pool.submit(0, "reset", fast, timeout_s=60.0)
        (result,) = _results(pool)
        assert result.ok, result.detail  # a cloud-style start in a worker process works
        began = time.monotonic()
        pool.submit(0, "reset", slow, timeout_s=2.0)  # the download takes ~48 s: past the limit
        (result,) = _results(pool)
        assert result.timed_out and time.monotonic() - began < 20.0
        assert marker.read_text().splitlines() == ["stop vm-image-1"]  # closed by the worker itself


def _results(pool):
    results: list = []
    while not results:
        results = pool.poll(1.0)
    return results
