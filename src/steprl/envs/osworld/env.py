"""OSWorldEnv: OSWorld's DesktopEnv behind the GUIEnv protocol (see the package docstring)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from steprl.actions import ActionParseError, action_to_pyautogui, model_frame, parse_response
from steprl.errors import MissingDependencyError
from steprl.envs.episode import Episode, NoSnapshots
from steprl.envs.osworld.tasks import TaskStore, load_tasks
from steprl.types import Observation, StepResult, Task

OBSERVATIONS = ("screenshot", "a11y", "both")
INSTALL = "pip install desktop-env   (or: pip install -e '.[osworld]'), and clone https://github.com/xlang-ai/OSWorld for the tasks"
T = TypeVar("T")


def _import_desktop_env() -> Any:
    """The DesktopEnv class, or MissingDependencyError with the install command."""
    try:
        from desktop_env.desktop_env import DesktopEnv
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "desktop_env":
            raise MissingDependencyError("OSWorldEnv", "desktop-env", INSTALL) from None
        raise ImportError(f"desktop-env is installed but cannot be imported ({error}); reinstall it: {INSTALL}") from error
    return DesktopEnv


def call_with_timeout(fn: Callable[[], T], timeout_s: float | None, what: str, on_late: Callable[[T], None] | None = None) -> T:
    """fn() in a helper thread, or TimeoutError after `timeout_s` (None: no limit, same thread).

    A call that finishes after its timeout hands its result to `on_late` (to close a VM that
    booted too late) instead of leaking it.
    """
    if timeout_s is None:
        return fn()
    box: dict[str, Any] = {}
    lock = threading.Lock()

    def run() -> None:
        try:
            value = fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller
            box["error"] = error
            return
        with lock:
            if box.get("abandoned") and on_late is not None:
                on_late(value)
            box["value"] = value

    thread = threading.Thread(target=run, name=f"osworld-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    with lock:
        if thread.is_alive():
            box["abandoned"] = True
            raise TimeoutError(f"OSWorld {what} took longer than {timeout_s:g} s (raise env.{what}_timeout_s, or check the VM provider)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def decode_screenshot(data: Any) -> np.ndarray:
    """OSWorld's screenshot (PNG/JPEG bytes) -> (H, W, 3) uint8 RGB."""
    if not isinstance(data, (bytes, bytearray)):
        raise RuntimeError(
            "OSWorld returned no screenshot (the VM's server did not answer); the episode is reported as an env error."
        )
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


class OSWorldEnv(NoSnapshots):
    """OSWorld's DesktopEnv driven by UI-TARS text (see the module docstring for the kwargs)."""


    def __init__(
        self,
        osworld_root: str | None = None,
        train_index: str | None = None,
        test_index: str = "evaluation_examples/test_all.json",
        examples_dir: str = "evaluation_examples/examples",
        domains: Sequence[str] | None = None,
        provider_name: str = "docker",
        path_to_vm: str | None = None,
        region: str | None = None,
        snapshot_name: str = "init_state",
        screen_size: Sequence[int] = (1920, 1080),
        headless: bool = True,
        os_type: str = "Ubuntu",
        cache_dir: str = "cache",
        client_password: str | None = None,
        enable_proxy: bool = False,
        require_terminal: bool = False,
        observation: str = "screenshot",
        coords: str = "absolute",
        model_image_size: Sequence[int] | None = None,
        max_steps: int = 15,
        pause_s: float = 0.5,
        sleep_after_reset_s: float = 60.0,
        sleep_before_evaluate_s: float = 20.0,
        start_timeout_s: float | None = 900.0,
        reset_timeout_s: float | None = 900.0,
    ):
        self._desktop_class = _import_desktop_env()
        if not osworld_root:
            raise ValueError("env.osworld_root is not set: give the path of a checkout of https://github.com/xlang-ai/OSWorld (or set OSWORLD_ROOT).")
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self._screen_size = (int(screen_size[0]), int(screen_size[1]))
        self.coords = coords
        self.model_image_size = tuple(int(v) for v in model_image_size) if model_image_size is not None else None
        model_frame(self._screen_size, coords, self.model_image_size)  # checks coords and sizes now
        self.root = Path(osworld_root).expanduser()
        self.index_paths = {"train": train_index or test_index, "test": test_index}
        self.store = TaskStore(self.root / examples_dir)
        self.domains = set(domains) if domains is not None else None
        self.observation = observation
        self.max_steps = int(max_steps)
        self.pause_s = float(pause_s)
        self.sleep_after_reset_s = float(sleep_after_reset_s)
        self.sleep_before_evaluate_s = float(sleep_before_evaluate_s)
        self.start_timeout_s = None if start_timeout_s is None else float(start_timeout_s)
        self.reset_timeout_s = None if reset_timeout_s is None else float(reset_timeout_s)
        self.desktop_kwargs: dict[str, Any] = {
            "provider_name": provider_name,
            "region": region,
            "path_to_vm": path_to_vm,
            "snapshot_name": snapshot_name,
            "action_space": "pyautogui",
            "cache_dir": cache_dir,
            "screen_size": self._screen_size,
            "headless": bool(headless),
            "require_a11y_tree": observation != "screenshot",
            "require_terminal": bool(require_terminal),
            "os_type": os_type,
        }
        # Passed only when set, so desktop-env releases without these arguments still work.
        if enable_proxy:
            self.desktop_kwargs["enable_proxy"] = True
        if client_password is not None:
            self.desktop_kwargs["client_password"] = client_password
        self._desktop: Any = None
        self._splits: dict[str, list[Task]] = {}
        self._task: Task | None = None
        self._last: Observation | None = None
        self._episode = Episode()

    # -- GUIEnv protocol -----------------------------------------------------------------------

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._screen_size

    def tasks(self, split: str) -> list[Task]:
        """The tasks of split "train" or "test", read from the checkout (no VM is started)."""
        if split not in self.index_paths:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if split not in self._splits:
            self._splits[split] = self._load_split(split)
        return list(self._splits[split])

    def reset(self, task: Task) -> Observation:
        """Boot the VM if needed, set `task` up (DesktopEnv.reset) and return the first screen."""
        task_json = task.config.get("task") if isinstance(task.config, dict) else None
        if not isinstance(task_json, dict):
            raise ValueError(f"Task {task.id!r} is not an OSWorld task (its config needs 'task', the task JSON); build tasks with OSWorldEnv.tasks().")
        self._task = None  # until the new task is set up, no episode is running
        desktop = self._ensure_desktop()
        try:
            raw = call_with_timeout(
                lambda: desktop.reset(task_config=task_json), self.reset_timeout_s, "reset", on_late=lambda _: desktop.close()
            )
        except TimeoutError:
            self._desktop, self._task = None, None  # a hung VM is not reused: the next reset boots a new one
            raise
        if self.sleep_after_reset_s > 0:
            time.sleep(self.sleep_after_reset_s)  # OSWorld's harness waits for the apps to open
        self._task = task
        self._episode.begin(task.max_steps or self.max_steps)
        self._last = self._observe(raw)
        return self._last

    def step(self, response_text: str) -> StepResult:
        """Parse the response, run its pyautogui code (or WAIT / DONE / FAIL) in the VM. Malformed
        text costs a turn without touching the VM (action_valid=False, error=reason)."""
        self._require_task()
        episode = self._episode
        if episode.done:
            return episode.over(self._last)
        action, code, error, osworld_info = None, None, None, {}
        try:
            action = parse_response(response_text, self._screen_size, self.coords, self.model_image_size)
            code = action_to_pyautogui(action)
        except ActionParseError as problem:
            error = problem.reason
        if code is not None:
            raw, _, vm_done, osworld_info = self._desktop.step(code, pause=self.pause_s)
            self._last = self._observe(raw)
            if vm_done:
                episode.end(action.type)  # type: ignore[union-attr]
        episode.count_step()
        info = episode.info(action_valid=error is None, error=error, action=action, code=code, osworld_info=osworld_info)
        return StepResult(self._last, episode.done, info)  # type: ignore[arg-type]

    def evaluate(self) -> float:
        """DesktopEnv.evaluate() (after OSWorld's settle time), as a score in [0, 1]."""
        self._require_task()
        if self.sleep_before_evaluate_s > 0:
            time.sleep(self.sleep_before_evaluate_s)
        return min(1.0, max(0.0, float(self._desktop.evaluate())))

    def close(self) -> None:
        """Shut the VM down (idempotent)."""
        desktop, self._desktop, self._task = self._desktop, None, None
        if desktop is not None:
            desktop.close()

    # -- extras --------------------------------------------------------------------------------

    @property
    def desktop(self) -> Any:
        """The DesktopEnv (None until the first reset)."""
        return self._desktop

    # -- internals -----------------------------------------------------------------------------

    def _require_task(self) -> Task:
        if self._task is None or self._desktop is None:
            raise RuntimeError("OSWorldEnv: call reset(task) first (no episode is running).")
        return self._task

    def _load_split(self, split: str) -> list[Task]:
        path = Path(self.index_paths[split])
        return load_tasks(path if path.is_absolute() else self.root / path, self.store, split, self.domains)

    def _ensure_desktop(self) -> Any:
        if self._desktop is None:
            self._desktop = call_with_timeout(
                lambda: self._desktop_class(**self.desktop_kwargs), self.start_timeout_s, "start", on_late=lambda vm: vm.close()
            )
        return self._desktop

    def _observe(self, raw: dict[str, Any]) -> Observation:
        screenshot = decode_screenshot(raw.get("screenshot"))
        height, width = screenshot.shape[:2]
        if (width, height) != self._screen_size:
            raise ValueError(
                f"The VM's screen is {width}x{height} but env.screen_size is {list(self._screen_size)}; set env.screen_size=[{width},{height}]."
            )
        a11y = raw.get("accessibility_tree") if self.observation != "screenshot" else None
        instruction = self._task.instruction if self._task is not None else str(raw.get("instruction") or "")
        return Observation(
            screenshot=screenshot,
            instruction=instruction,
            a11y=a11y,
            state_hash=hashlib.sha1(raw["screenshot"]).hexdigest()[:16],
        )
