"""OSWorldEnv: OSWorld's DesktopEnv behind the GUIEnv protocol (see the package docstring)."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from steprl.actions import ActionParseError, action_to_pyautogui, model_frame, parse_actions
from steprl.envs.episode import Episode, NoSnapshots
from steprl.envs.osworld.a11y import trim_a11y
from steprl.envs.osworld.cache import fetch_task_files
from steprl.envs.osworld.tasks import TaskStore, load_tasks
from steprl.errors import ConfigError, MissingDependencyError
from steprl.types import Action, Observation, StepResult, Task

log = logging.getLogger(__name__)

OBSERVATIONS = ("screenshot", "a11y", "both")
MULTI_ACTIONS = ("first", "all")
#: Providers whose VM allocation installs SIGINT/SIGTERM handlers (signal.signal works only in a
#: process's main thread), so DesktopEnv must be built and reset there.
SIGNAL_PROVIDERS = frozenset({"aws", "aliyun", "volcengine"})
INSTALL = (
    "pip install --no-deps -r requirements/osworld.txt && pip install -r requirements/osworld-runtime.txt "
    "(desktop-env's own pins conflict with steprl's; see docs/benchmarks.md), and clone "
    "https://github.com/xlang-ai/OSWorld for the tasks"
)


def _import_desktop_env() -> Any:
    """The DesktopEnv class, or MissingDependencyError with the install command."""
    try:
        from desktop_env.desktop_env import DesktopEnv
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "desktop_env":
            raise MissingDependencyError("OSWorldEnv", "desktop-env", INSTALL) from None
        raise MissingDependencyError(
            "OSWorldEnv", f"{error.name} (imported by desktop_env)", "pip install -r requirements/osworld-runtime.txt"
        ) from error
    return DesktopEnv


def decode_screenshot(data: Any) -> np.ndarray:
    """OSWorld's screenshot (PNG/JPEG bytes) -> (H, W, 3) uint8 RGB."""
    if not isinstance(data, (bytes, bytearray)):
        raise RuntimeError(
            "OSWorld returned no screenshot (the VM's server did not answer); the episode is reported as an env error."
        )
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _check_main_thread(provider_name: str) -> None:
    """Cloud providers call signal.signal while they allocate a VM: refuse a worker thread with
    the fix, instead of OSWorld's "signal only works in main thread"."""
    if provider_name in SIGNAL_PROVIDERS and threading.current_thread() is not threading.main_thread():
        raise ConfigError(
            f"env.provider_name={provider_name} installs signal handlers while it starts a VM, which works only in "
            "a process's main thread; use rollout=local with rollout.pool.backend=process (the default) or rollout=ray, "
            "not rollout=threads."
        )


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
        wait_s: float = 5.0,
        multi_action: str = "all",
        a11y_max_chars: int | None = 40000,
        exclude_credential_tasks: bool = True,
        sleep_after_reset_s: float = 60.0,
        sleep_before_evaluate_s: float = 20.0,
        download_timeout_s: float = 300.0,
        start_timeout_s: float | None = None,
        reset_timeout_s: float | None = None,
    ):
        if start_timeout_s is not None or reset_timeout_s is not None:
            raise ConfigError(
                "env.start_timeout_s / env.reset_timeout_s are gone: every env time limit is set in one place, "
                "rollout.collector.reset_timeout_s / step_timeout_s / evaluate_timeout_s (and rollout.pool.start_timeout_s); "
                "the env worker enforces it and closes the VM before the pool kills the worker."
            )
        if multi_action not in MULTI_ACTIONS:
            raise ConfigError(f"env.multi_action must be one of {MULTI_ACTIONS}, got {multi_action!r}")
        if float(wait_s) < 0:
            raise ConfigError(f"env.wait_s must be >= 0, got {wait_s}")
        if a11y_max_chars is not None and int(a11y_max_chars) < 1:
            raise ConfigError(f"env.a11y_max_chars must be a positive number of characters or null, got {a11y_max_chars}")
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
        self.wait_s = float(wait_s)
        self.multi_action = multi_action
        self.a11y_max_chars = None if a11y_max_chars is None else int(a11y_max_chars)
        self.exclude_credential_tasks = bool(exclude_credential_tasks)
        self.excluded: dict[str, list[str]] = {}  # split -> ids of tasks left out (need credentials)
        self.sleep_after_reset_s = float(sleep_after_reset_s)
        self.sleep_before_evaluate_s = float(sleep_before_evaluate_s)
        self.download_timeout_s = float(download_timeout_s)
        self.cache_dir = cache_dir
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
        """Boot the VM if needed, fetch the task's files whole into the cache, set the task up
        (DesktopEnv.reset, in this thread) and return the first screen.

        No helper thread and no timer of its own: the env worker that runs this call enforces the
        collector's reset_timeout_s and closes the VM when it fires (steprl.rollout.workers)."""
        task_json = task.config.get("task") if isinstance(task.config, dict) else None
        if not isinstance(task_json, dict):
            raise ValueError(f"Task {task.id!r} is not an OSWorld task (its config needs 'task', the task JSON); build tasks with OSWorldEnv.tasks().")
        self._task = None  # until the new task is set up, no episode is running
        fetch_task_files(self.cache_dir, task_json, self.download_timeout_s)
        desktop = self._ensure_desktop()
        try:
            raw = desktop.reset(task_config=task_json)
        except BaseException:
            self.close()  # a VM whose reset failed half-way is not reused: the next reset boots a new one
            raise
        if self.sleep_after_reset_s > 0:
            time.sleep(self.sleep_after_reset_s)  # OSWorld's harness waits for the apps to open
        self._task = task
        self._episode.begin(task.max_steps or self.max_steps)
        self._last = self._observe(raw)
        return self._last

    def step(self, response_text: str) -> StepResult:
        """Parse the response, run its action(s) in the VM: pyautogui code, or WAIT / DONE / FAIL.

        env.multi_action="all" runs every action of the response in order (each one
        DesktopEnv.step, as OSWorld's runner does), stopping at the VM's end; "first" runs the
        first only. Either way the response costs one turn. Malformed text costs a turn without
        touching the VM (action_valid=False, error=reason)."""
        self._require_task()
        episode = self._episode
        if episode.done:
            return episode.over(self._last)
        actions: list[Action] = []
        codes: list[str] = []
        error, osworld_info = None, {}
        try:
            actions = parse_actions(response_text, self._screen_size, self.coords, self.model_image_size)
            if self.multi_action == "first":
                actions = actions[:1]
            codes = [action_to_pyautogui(a) for a in actions]
        except ActionParseError as problem:
            actions, codes, error = [], [], problem.reason
        for action, code in zip(actions, codes):
            pause = self.wait_s / 2 if code == "WAIT" else self.pause_s  # DesktopEnv sleeps `pause` twice on WAIT
            raw, _, vm_done, osworld_info = self._desktop.step(code, pause=pause)
            self._last = self._observe(raw)
            if vm_done:
                episode.end(action.type)
                break
        episode.count_step()
        info = episode.info(
            action_valid=error is None,
            error=error,
            action=actions[0] if actions else None,
            actions=actions,
            code="\n".join(c for c in codes) if codes else None,
            osworld_info=osworld_info,
        )
        return StepResult(self._last, episode.done, info)  # type: ignore[arg-type]

    def evaluate(self) -> float:
        """DesktopEnv.evaluate() (after OSWorld's settle time), as a score in [0, 1]."""
        self._require_task()
        if self.sleep_before_evaluate_s > 0:
            time.sleep(self.sleep_before_evaluate_s)
        return min(1.0, max(0.0, float(self._desktop.evaluate())))

    def close(self) -> None:
        """Stop the VM (idempotent; also after a failed reset, a timeout or a kill signal)."""
        desktop, self._desktop, self._task = self._desktop, None, None
        if desktop is not None:
            log.info("OSWorld: stopping the VM %s", getattr(desktop, "path_to_vm", ""))
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
        excluded: list[str] = []
        tasks = load_tasks(
            path if path.is_absolute() else self.root / path, self.store, split, self.domains, self.exclude_credential_tasks, excluded
        )
        self.excluded[split] = excluded
        if excluded:
            log.warning(
                "OSWorld %s split: %d of %d tasks left out because their set-up needs Google Drive credentials "
                "(env.exclude_credential_tasks=false keeps them): %s",
                split, len(excluded), len(excluded) + len(tasks), ", ".join(excluded),
            )  # fmt: skip
        return tasks

    def _ensure_desktop(self) -> Any:
        """Build DesktopEnv (boots the VM) in the calling thread: cloud providers install signal
        handlers while they allocate, which only a main thread may do."""
        if self._desktop is None:
            _check_main_thread(self.desktop_kwargs["provider_name"])
            self._desktop = self._desktop_class(**self.desktop_kwargs)
        return self._desktop

    def _observe(self, raw: dict[str, Any]) -> Observation:
        screenshot = decode_screenshot(raw.get("screenshot"))
        height, width = screenshot.shape[:2]
        if (width, height) != self._screen_size:
            raise ValueError(
                f"The VM's screen is {width}x{height} but env.screen_size is {list(self._screen_size)}; set env.screen_size=[{width},{height}]."
            )
        a11y = trim_a11y(raw.get("accessibility_tree"), self.a11y_max_chars) if self.observation != "screenshot" else None
        instruction = self._task.instruction if self._task is not None else str(raw.get("instruction") or "")
        return Observation(
            screenshot=screenshot,
            instruction=instruction,
            a11y=a11y,
            state_hash=hashlib.sha1(raw["screenshot"]).hexdigest()[:16],
        )
