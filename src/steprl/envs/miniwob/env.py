"""MiniWoBEnv: MiniWoB++ web tasks (Farama `miniwob`, headless Chromium) behind the GUIEnv protocol."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from steprl.actions import ActionParseError, action_to_response, model_frame, parse_response
from steprl.errors import MissingDependencyError
from steprl.envs.episode import Episode, NoSnapshots
from steprl.envs.miniwob.catalog import CATALOG, score_from_reward, split_seeds, task_difficulty, task_id
from steprl.envs.miniwob.commands import SCREEN_SIZE, MiniWoBCommand, UnsupportedAction, to_miniwob
from steprl.envs.miniwob.expert import EXPERT_TASKS, elements_from_dom, expert_action
from steprl.types import Observation, StepResult, Task

log = logging.getLogger(__name__)

OBSERVATIONS = ("screenshot", "a11y", "both")
REWARDS = ("raw", "decayed")
INSTALL = "pip install miniwob selenium   (or: pip install -e '.[miniwob]')"
BROWSER_INSTALL = (
    "apt-get install -y chromium chromium-driver   (Debian/Ubuntu), or set env.chrome_binary and "
    "env.chromedriver to a Chrome/Chromium and the ChromeDriver of the same version"
)


class BrowserFailure(RuntimeError):
    """The Chromium of a MiniWoBEnv crashed, hung past its command timeout or stopped answering.

    The env has already killed that browser; the next `reset` starts a fresh one. The rollout
    collector treats it like any env failure: the episode is retried from reset, then counted in
    rollout/env_errors.
    """


def _import_browser() -> Any:
    """steprl.envs.miniwob.browser, or MissingDependencyError naming the install command."""
    try:
        browser = importlib.import_module("steprl.envs.miniwob.browser")
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] in ("miniwob", "selenium", "gymnasium"):
            raise MissingDependencyError("MiniWoBEnv", error.name.split(".")[0], INSTALL) from None
        raise
    return browser


class MiniWoBEnv(NoSnapshots):
    """MiniWoB++ tasks in a local headless Chromium, driven by UI-TARS text.

    One browser per env instance, started on the first `tasks()` or `reset()` (building the env is
    cheap) and reused across tasks (the page is switched, not the browser). See the package
    docstring for the keyword arguments.
    """


    def __init__(
        self,
        tasks: Sequence[str] | None = None,
        seeds_per_task: int = 8,
        test_seeds_per_task: int = 4,
        task_seed: int = 0,
        first_test_seed: int | None = None,
        observation: str = "screenshot",
        coords: str = "absolute",
        model_image_size: Sequence[int] | None = None,
        max_steps: int = 10,
        reward: str = "raw",
        episode_time_limit_s: float | None = None,
        wait_s: float = 1.0,
        chrome_binary: str = "/usr/bin/chromium",
        chromedriver: str = "/usr/bin/chromedriver",
    ):
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if int(seeds_per_task) < 0 or int(test_seeds_per_task) < 0:
            raise ValueError("seeds_per_task and test_seeds_per_task must be >= 0")
        if episode_time_limit_s is not None and float(episode_time_limit_s) <= 0:
            raise ValueError(f"episode_time_limit_s must be positive or null, got {episode_time_limit_s}")
        names = list(tasks) if tasks is not None else [t.name for t in CATALOG]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks must be a non-empty list of distinct MiniWoB++ task names, got {names}")
        self._browser_module = _import_browser()
        for binary, key in ((chrome_binary, "chrome_binary"), (chromedriver, "chromedriver")):
            if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
                raise MissingDependencyError(f"MiniWoBEnv (env.{key}={binary})", "chromium + chromium-driver", BROWSER_INSTALL)
        self.task_names = names
        self.seeds_per_task, self.test_seeds_per_task = int(seeds_per_task), int(test_seeds_per_task)
        self.task_seed = int(task_seed)
        self.first_test_seed = None if first_test_seed is None else int(first_test_seed)
        split_seeds("test", self.seeds_per_task, self.test_seeds_per_task, self.task_seed, self.first_test_seed)  # checks it now
        self.observation = observation
        self.coords = coords
        self.model_image_size = tuple(int(v) for v in model_image_size) if model_image_size is not None else None
        model_frame(SCREEN_SIZE, coords, self.model_image_size)  # checks coords and sizes now
        self.max_steps = int(max_steps)
        self.reward = reward
        self.episode_time_limit_s = None if episode_time_limit_s is None else float(episode_time_limit_s)
        self.wait_s = float(wait_s)
        self.chrome_binary, self.chromedriver = chrome_binary, chromedriver
        self._gym: Any = None  # OfflineMiniWoBEnv, started lazily
        self._instructions: dict[tuple[str, int, str], str] = {}
        self._task: Task | None = None
        self._raw: dict[str, Any] = {}  # the latest miniwob observation (utterance, fields, DOM)
        self._last: Observation | None = None
        self._episode = Episode()

    # -- GUIEnv protocol -----------------------------------------------------------------------

    @property
    def screen_size(self) -> tuple[int, int]:
        return SCREEN_SIZE

    def tasks(self, split: str) -> list[Task]:
        """Every task name x every seed of `split`. Instructions are read from the pages: the
        browser starts here if it is not running, and reading an instance's utterance (once; it is
        cached) ends a running episode, so list the tasks before running episodes."""
        seeds = split_seeds(split, self.seeds_per_task, self.test_seeds_per_task, self.task_seed, self.first_test_seed)
        out = []
        for name in self.task_names:
            for seed in seeds:
                out.append(
                    Task(
                        id=task_id(name, seed),
                        family=name,
                        instruction=self._instruction(name, seed, split),
                        difficulty=task_difficulty(name),
                        split=split,
                        config={"task": name, "seed": seed, "data_mode": split},
                    )
                )
        return out

    def reset(self, task: Task) -> Observation:
        """Open the task's page (if another is showing) and start the episode of its seed."""
        name, seed, mode = self._task_config(task)
        self._task = None  # until the page has started, no episode is running
        with self._browser_guard(f"reset of {task.id}"):
            self._start_episode(name, seed, mode)
        if self._raw.get("utterance") != task.instruction:  # a page whose seeding is not deterministic
            log.warning("MiniWoB %s: the page asks %r but the task says %r", task.id, self._raw.get("utterance"), task.instruction)
        self._task = task
        self._episode.begin(task.max_steps or self.max_steps)
        self._last = self._observe(self._raw)
        return self._last

    def step(self, response_text: str) -> StepResult:
        """Parse and execute one model response. Malformed text or an action MiniWoB++ cannot do
        costs a turn and is reported in info (action_valid=False, error=reason); never raises."""
        self._require_task()
        episode = self._episode
        if episode.done:
            return episode.over(self._last)
        action, command, error = None, None, None
        try:
            action = parse_response(response_text, SCREEN_SIZE, self.coords, self.model_image_size)
            command = to_miniwob(action, self.wait_s)
        except (ActionParseError, UnsupportedAction) as problem:
            error = problem.reason
        page_done = False
        if command is not None:
            with self._browser_guard(f"a step of {self._task.id}"):  # type: ignore[union-attr]
                page_done = self._run(command)
            if command.ends_episode:
                episode.end(action.type)  # type: ignore[union-attr]
        if page_done:
            episode.end("page")  # the task ended: submitted, solved or timed out
        episode.count_step()
        if command is not None and command.steps:
            self._last = self._observe(self._raw)
        info = episode.info(action_valid=error is None, error=error, action=action, page_done=page_done)
        return StepResult(self._last, episode.done, info)  # type: ignore[arg-type]

    def evaluate(self) -> float:
        """The task score in [0, 1]: the page's reward once its episode has ended, mapped by
        `score_from_reward` (raw reward by default; `reward: decayed` keeps MiniWoB's time decay).
        0 while the page's episode is still running (e.g. after finished() before submitting)."""
        task = self._require_task()
        with self._browser_guard(f"evaluate of {task.id}"):
            meta = self._gym.metadata_now()
        if not meta.get("done"):
            return 0.0
        return score_from_reward(meta["raw_reward"] if self.reward == "raw" else meta["env_reward"])

    def close(self) -> None:
        """Quit the browser (idempotent)."""
        if self._gym is not None:
            try:
                self._gym.close()
            finally:
                self._gym = None
        self._task = None

    # -- extras --------------------------------------------------------------------------------

    def has_expert(self, task: Task) -> bool:
        """Whether `expert_response` can solve `task`."""
        return self._task_config(task)[0] in EXPERT_TASKS

    def expert_response(self, thought: str | None = None) -> str:
        """The scripted expert's UI-TARS response for the current page (see expert.py), in the
        env's coordinate convention. Raises ValueError for tasks without an expert."""
        task = self._require_task()
        name = self._task_config(task)[0]
        fields = {str(k): str(v) for k, v in self._raw.get("fields", ())}
        action = expert_action(name, fields, elements_from_dom(self._raw.get("dom_elements", ())))
        return action_to_response(action, SCREEN_SIZE, self.coords, self.model_image_size, thought)

    @property
    def task(self) -> Task | None:
        return self._task

    @property
    def browser_running(self) -> bool:
        """Whether the Chromium of this env has been started (and not closed)."""
        return self._gym is not None

    @property
    def page(self) -> dict[str, Any]:
        """The latest raw miniwob observation (utterance, fields, dom_elements, screenshot)."""
        return self._raw

    # -- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _browser_guard(self, what: str) -> Iterator[None]:
        """Turn a browser failure during `what` into `BrowserFailure`, after killing the browser
        (so it can neither leak nor be reused half-dead)."""
        try:
            yield
        except self._browser_module.BROWSER_ERRORS as error:
            self._discard_browser()
            raise BrowserFailure(
                f"MiniWoB++ browser failed during {what} ({type(error).__name__}: {str(error).strip()[:300]}); "
                "it was killed and the next reset starts a new one"
            ) from error

    def _discard_browser(self) -> None:
        """Kill the browser outright, then drop the env around it (its quit would talk to a dead driver)."""
        gym, self._gym, self._task = self._gym, None, None
        if gym is not None:
            gym.kill_browser()

    def _require_task(self) -> Task:
        if self._task is None:
            raise RuntimeError("MiniWoBEnv: call reset(task) first (no episode is running).")
        return self._task

    @staticmethod
    def _task_config(task: Task) -> tuple[str, int, str]:
        try:
            return str(task.config["task"]), int(task.config["seed"]), str(task.config.get("data_mode", task.split))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"Task {task.id!r} is not a MiniWoB task (its config needs 'task' and 'seed'); build tasks with MiniWoBEnv.tasks().") from None

    def _browser(self, name: str) -> Any:
        """The gymnasium env showing task `name` (started on first use)."""
        if self._gym is None:
            self._gym = self._browser_module.OfflineMiniWoBEnv(name, self.chrome_binary, self.chromedriver)
        self._gym.switch_task(name)
        return self._gym

    def _start_episode(self, name: str, seed: int, mode: str) -> None:
        gym = self._browser(name)
        if self.episode_time_limit_s is not None:
            gym.set_time_limit(self.episode_time_limit_s)
        self._raw, _ = gym.reset(seed=seed, options={"data_mode": mode})

    def _instruction(self, name: str, seed: int, split: str) -> str:
        """The utterance of (task, seed) as the page generates it (cached; ends the episode)."""
        key = (name, seed, split)
        if key not in self._instructions:
            with self._browser_guard(f"reading the instruction of {task_id(name, seed)}"):
                self._start_episode(name, seed, split)
                self._instructions[key] = str(self._raw["utterance"])
                self._gym.instance.force_stop()
            self._task = None
        return self._instructions[key]

    def _run(self, command: MiniWoBCommand) -> bool:
        """Execute the command's steps; True when the page's episode ended (stops early then)."""
        gym = self._gym
        done = False
        for action_type, fields in command.steps:
            values = {k: np.asarray(v, dtype=np.float32) if k == "coords" else v for k, v in fields.items()}
            if "key" in values:
                values["key"] = gym.action_space_config.allowed_keys.index(values["key"])
            self._raw, _, done, _, _ = gym.step(gym.create_action(action_type, **values))
            if done:  # the page shows its end screen; miniwob's observation is then a blank one
                return True
        if command.pause_s > 0:
            time.sleep(command.pause_s)
            self._raw, _, done, _, _ = gym.step(gym.create_action("NONE"))
        return bool(done)

    def _observe(self, raw: dict[str, Any]) -> Observation:
        task = self._require_task()
        screenshot = np.asarray(raw["screenshot"], dtype=np.uint8)
        if self.observation == "a11y":
            screenshot = np.zeros_like(screenshot)  # the protocol needs an array; this mode shows text only
        elements = elements_from_dom(raw.get("dom_elements", ()))
        a11y = dom_text(elements) if self.observation != "screenshot" else None
        return Observation(screenshot=screenshot, instruction=task.instruction, a11y=a11y, state_hash=dom_hash(elements))


def dom_text(elements: Sequence[Any]) -> str:
    """Accessibility-style text of the page: one visible element per line, with its box."""
    lines = []
    for e in elements:
        if e.tag in ("body", "t") and not e.text:
            continue
        label = e.text or e.value
        lines.append(f"{e.tag}{'#' + e.id if e.id else ''} '{label}' at ({e.left:.0f},{e.top:.0f},{e.width:.0f}x{e.height:.0f})"
                     + (" focused" if e.focused else ""))  # fmt: skip
    return "\n".join(lines)


def dom_hash(elements: Sequence[Any]) -> str:
    """Hash of what the page shows (tags, texts, values, boxes, focus): a blinking caret or the
    per-step refs of text nodes do not change it, a typed letter or a moved element does."""
    digest = hashlib.sha1()
    for e in elements:
        digest.update(f"{e.tag}|{e.text}|{e.value}|{e.left:.0f},{e.top:.0f},{e.width:.0f},{e.height:.0f}|{int(e.focused)}\n".encode())
    return digest.hexdigest()[:16]
