"""AndroidWorldEnv: AndroidWorld on one emulator behind the GUIEnv protocol (see the package docstring)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from steprl.actions import ActionParseError, model_frame, parse_response
from steprl.envs.androidworld.actions import UnsupportedAction, elements_text, json_actions
from steprl.envs.androidworld.tasks import difficulty_of, instance_seed, random_params, split_names, step_budget
from steprl.errors import MissingDependencyError
from steprl.envs.episode import Episode, NoSnapshots
from steprl.types import Observation, StepResult, Task

OBSERVATIONS = ("screenshot", "a11y", "both")
INSTALL = (
    "git clone https://github.com/google-research/android_world && cd android_world && "
    "pip install -r requirements.txt && python setup.py install   (AndroidWorld is not on PyPI; it also "
    "needs the Android SDK emulator, see docs/benchmarks.md)"
)


def _import_android_world() -> tuple[Any, Any, Any, Any]:
    """(env_launcher, json_action, registry, adb_utils) modules, or MissingDependencyError."""
    try:
        from android_world import registry
        from android_world.env import adb_utils, env_launcher, json_action
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "android_world":
            raise MissingDependencyError("AndroidWorldEnv", "android_world", INSTALL) from None
        raise ImportError(f"android_world is installed but cannot be imported ({error}); reinstall it: {INSTALL}") from error
    return env_launcher, json_action, registry, adb_utils


class AndroidWorldEnv(NoSnapshots):
    """AndroidWorld on one emulator, driven by UI-TARS text (see the module docstring)."""


    def __init__(
        self,
        task_family: str = "android_world",
        tasks: Sequence[str] | None = None,
        n_task_combinations: int = 1,
        task_random_seed: int = 30,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        console_port: int = 5554,
        grpc_port: int = 8554,
        adb_path: str | None = None,
        emulator_setup: bool = False,
        freeze_datetime: bool = True,
        emulator_slot: int = 0,
        num_emulators: int = 1,
        console_port_stride: int = 2,
        grpc_port_stride: int = 1,
        screen_size: Sequence[int] = (1080, 2400),
        observation: str = "screenshot",
        coords: str = "absolute",
        model_image_size: Sequence[int] | None = None,
        max_steps: int = 20,
        transition_pause_s: float | None = None,
        score_requires_done: bool = True,
    ):
        self._launcher, self._json, registry, self._adb = _import_android_world()
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if int(n_task_combinations) < 1 or int(num_emulators) < 1 or int(max_steps) < 1:
            raise ValueError("n_task_combinations, num_emulators and max_steps must be >= 1")
        self._screen_size = (int(screen_size[0]), int(screen_size[1]))
        self.coords = coords
        self.model_image_size = tuple(int(v) for v in model_image_size) if model_image_size is not None else None
        model_frame(self._screen_size, coords, self.model_image_size)  # checks coords and sizes now
        try:
            self.registry = dict(registry.TaskRegistry().get_registry(task_family))
        except ValueError as error:
            raise ValueError(f"env.task_family={task_family!r}: {error}") from None
        names = sorted(self.registry) if tasks is None else list(tasks)
        unknown = [n for n in names if n not in self.registry]
        if unknown:
            raise ValueError(f"Unknown AndroidWorld task(s) {unknown} in family {task_family!r}; known: {', '.join(sorted(self.registry))}")
        self.task_family = task_family
        self.names = split_names(names, float(test_fraction), int(split_seed))
        self.n_task_combinations, self.task_random_seed = int(n_task_combinations), int(task_random_seed)
        slot = int(emulator_slot) % int(num_emulators)
        self.launch_kwargs: dict[str, Any] = {
            "console_port": int(console_port) + slot * int(console_port_stride),
            "emulator_setup": bool(emulator_setup),
            "freeze_datetime": bool(freeze_datetime),
            "grpc_port": int(grpc_port) + slot * int(grpc_port_stride),
        }
        if adb_path is not None:
            self.launch_kwargs["adb_path"] = str(adb_path)
        self.observation = observation
        self.max_steps = int(max_steps)
        self.transition_pause_s = None if transition_pause_s is None else float(transition_pause_s)
        self.score_requires_done = bool(score_requires_done)
        self._device: Any = None
        self._splits: dict[str, list[Task]] = {}
        self._task: Task | None = None
        self._instance: Any = None  # the TaskEval of the running episode (torn down on the next reset)
        self._elements: list[Any] = []
        self._last: Observation | None = None
        self._last_tap: tuple[int, int] | None = None
        self._episode = Episode()
        self._agent_done = False

    # -- GUIEnv protocol -----------------------------------------------------------------------

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._screen_size

    def tasks(self, split: str) -> list[Task]:
        """n_task_combinations instances of each task name of `split` (no emulator needed)."""
        if split not in self.names:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if split not in self._splits:
            self._splits[split] = [self._make_task(name, i, split) for name in self.names[split] for i in range(self.n_task_combinations)]
        return list(self._splits[split])

    def reset(self, task: Task) -> Observation:
        """Tear the previous task down, set `task` up (initialize_task), go home if the task
        starts there, and return the first screen."""
        name, params = self._task_config(task)
        self._task = None  # until the new task is set up, no episode is running
        device = self._ensure_device()
        self._tear_down()
        instance = self.registry[name](dict(params))
        instance.initialize_task(device)
        self._instance = instance
        device.reset(go_home=bool(getattr(instance, "start_on_home_screen", True)))
        self._task, self._agent_done = task, False
        self._episode.begin(task.max_steps or self.max_steps)
        self._last_tap = None
        self._last = self._observe(device.get_state(wait_to_stabilize=self.transition_pause_s is None))
        return self._last

    def step(self, response_text: str) -> StepResult:
        """Parse the response, run its JSONAction(s) on the device, read the next screen.
        Malformed text costs a turn without touching the device (action_valid=False)."""
        self._require_task()
        episode = self._episode
        if episode.done:
            return episode.over(self._last)
        action, fields, error = None, [], None
        try:
            action = parse_response(response_text, self._screen_size, self.coords, self.model_image_size)
            fields = json_actions(action, self._elements, self._last_tap)
        except (ActionParseError, UnsupportedAction) as problem:
            error = problem.reason
        if fields:
            for kwargs in fields:
                self._execute(kwargs)
            taps = [f for f in fields if "x" in f]
            if taps:
                self._last_tap = (taps[-1]["x"], taps[-1]["y"])
            if action is not None and action.is_terminal:
                self._agent_done = True
                episode.end(action.type)
            self._last = self._observe(self._next_state())
        episode.count_step()
        info = episode.info(action_valid=error is None, error=error, action=action, json_actions=fields)
        return StepResult(self._last, episode.done, info)  # type: ignore[arg-type]

    def evaluate(self) -> float:
        """The task's is_successful(env) in [0, 1]; 0 when score_requires_done and the agent did
        not end the episode itself (AndroidWorld's rule)."""
        self._require_task()
        if self.score_requires_done and not self._agent_done:
            return 0.0
        return min(1.0, max(0.0, float(self._instance.is_successful(self._device))))

    def close(self) -> None:
        """Tear the running task down and disconnect from the emulator (idempotent)."""
        try:
            if self._device is not None:
                self._tear_down()
        finally:
            device, self._device, self._task = self._device, None, None
            if device is not None:
                device.close()

    # -- extras --------------------------------------------------------------------------------

    @property
    def device(self) -> Any:
        """The AndroidWorld AsyncEnv (None until the first reset)."""
        return self._device

    # -- internals -----------------------------------------------------------------------------

    def _make_task(self, name: str, index: int, split: str) -> Task:
        task_class = self.registry[name]
        params = random_params(task_class, instance_seed(self.task_random_seed, name, index))
        instance = task_class(dict(params))  # validates the params and renders the goal
        complexity = float(instance.complexity)
        return Task(
            id=f"{name}/{index}",
            family=name,
            instruction=str(instance.goal),
            difficulty=difficulty_of(complexity),
            split=split,
            config={"task": name, "params": params, "complexity": complexity},
            max_steps=step_budget(complexity),
        )

    def _task_config(self, task: Task) -> tuple[str, dict[str, Any]]:
        name = task.config.get("task") if isinstance(task.config, dict) else None
        if name not in self.registry or not isinstance(task.config.get("params"), dict):
            raise ValueError(f"Task {task.id!r} is not an AndroidWorld task of family {self.task_family!r}; build tasks with AndroidWorldEnv.tasks().")
        return name, task.config["params"]

    def _require_task(self) -> Task:
        if self._task is None or self._device is None:
            raise RuntimeError("AndroidWorldEnv: call reset(task) first (no episode is running).")
        return self._task

    def _ensure_device(self) -> Any:
        if self._device is None:
            device = self._launcher.load_and_setup_env(**self.launch_kwargs)
            size = tuple(int(v) for v in device.logical_screen_size)
            if size != self._screen_size:
                device.close()
                raise ValueError(f"The emulator's screen is {size[0]}x{size[1]} but env.screen_size is {list(self._screen_size)}; set env.screen_size=[{size[0]},{size[1]}].")
            self._device = device
        return self._device

    def _execute(self, step: dict[str, Any]) -> None:
        """One step of `json_actions`: a JSONAction, or an adb call through AndroidWorld's adb_utils
        (what its own actuation does, with the model's points and text kept)."""
        if "adb" not in step:
            self._device.execute_action(self._json.JSONAction(**step))
        elif step["adb"] == "swipe":
            (x1, y1), (x2, y2) = step["start"], step["end"]
            command = self._adb.generate_swipe_command(int(x1), int(y1), int(x2), int(y2), step["duration_ms"])
            self._adb.issue_generic_request(command, self._device.controller)
        elif step["adb"] == "type":
            self._adb.type_text(step["text"], self._device.controller)
        else:  # pragma: no cover - json_actions makes only the kinds above
            raise ValueError(f"unknown adb step {step!r}")

    def _tear_down(self) -> None:
        instance, self._instance = self._instance, None
        if instance is not None:
            instance.tear_down(self._device)

    def _next_state(self) -> Any:
        if self.transition_pause_s is None:
            return self._device.get_state(wait_to_stabilize=True)
        time.sleep(self.transition_pause_s)
        return self._device.get_state(wait_to_stabilize=False)

    def _observe(self, state: Any) -> Observation:
        task = self._require_task()
        self._elements = list(state.ui_elements)
        pixels = np.asarray(state.pixels)[..., :3].astype(np.uint8, copy=False)
        if (pixels.shape[1], pixels.shape[0]) != self._screen_size:  # device pixels vs logical pixels
            pixels = np.asarray(Image.fromarray(pixels).resize(self._screen_size))
        screenshot = np.zeros_like(pixels) if self.observation == "a11y" else pixels
        a11y = elements_text(self._elements) if self.observation != "screenshot" else None
        digest = hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]
        return Observation(screenshot=screenshot, instruction=task.instruction, a11y=a11y, state_hash=digest)
