"""The environment protocol every GUI environment implements, and the registry that builds them.

The shape follows what OSWorld's DesktopEnv, AndroidWorld and MiniWoB++ can all offer (see
docs/architecture.md): tasks come from the environment, the environment parses the model's text itself (so
each benchmark maps UI-TARS actions to its own action format), and the score is read from the final
state by `evaluate()`. Environments are built from plain keyword arguments (picklable), so a worker
process or a Ray actor can build its own copy from `(name, kwargs)`.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol, runtime_checkable

from steprl.errors import MissingDependencyError
from steprl.types import Observation, StepResult, Task


@runtime_checkable
class GUIEnv(Protocol):
    """A GUI environment driven by model text.

    - `tasks(split)` lists the task instances of a split ("train" or "test").
    - `reset(task)` sets the task up and returns the first observation.
    - `step(response_text)` parses the model's "Thought: ... Action: ..." text and executes it.
      An unparseable or impossible action costs a turn and is reported in `info["action_valid"]`
      and `info["error"]`; it never raises. `done` is True after a terminal action
      (finished / call_user) or when the task's step budget is spent.
    - `evaluate()` returns the task score in [0, 1] from the current state.
    - `snapshot()` / `restore(state)` copy and restore the full state where `supports_snapshot`.
    - `close()` releases whatever the environment holds (VMs, browsers, emulators).
    """

    supports_snapshot: bool

    @property
    def screen_size(self) -> tuple[int, int]:
        """(width, height) of the screen in pixels."""
        ...

    def tasks(self, split: str) -> list[Task]: ...

    def reset(self, task: Task) -> Observation: ...

    def step(self, response_text: str) -> StepResult: ...

    def evaluate(self) -> float: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...

    def close(self) -> None: ...




# name -> "module:attribute" (imported lazily so optional dependencies load only when used)
_REGISTRY: dict[str, str | Callable[..., GUIEnv]] = {
    "minidesk": "steprl.envs.minidesk.env:MiniDeskEnv",
    "miniwob": "steprl.envs.miniwob:MiniWoBEnv",
    "osworld": "steprl.envs.osworld:OSWorldEnv",
    "androidworld": "steprl.envs.androidworld:AndroidWorldEnv",
    "counter": "steprl.envs.counter:CounterEnv",  # a one-number toy desktop for tests and benchmarks
}


def register(name: str, target: str | Callable[..., GUIEnv]) -> None:
    """Register an environment under `name`: a "module:attribute" path or a factory."""
    _REGISTRY[name] = target


def available() -> list[str]:
    return sorted(_REGISTRY)


EnvTarget = str | Callable[..., GUIEnv]


def resolve(name: str) -> EnvTarget:
    """The registry entry of environment `name`: a "module:attribute" path or a factory.

    Worker processes and Ray actors start with a fresh registry, so pools resolve the entry in the
    parent and hand it over: an environment registered at run time (tests, plugins) works there too.
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown environment '{name}'. Known environments: {', '.join(available())}.")
    return _REGISTRY[name]


def build(target: EnvTarget, **kwargs: Any) -> GUIEnv:
    """Build an environment from a registry entry (imported lazily: optional dependencies load
    only when that environment is used)."""
    if callable(target):
        return target(**kwargs)
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)(**kwargs)


def make(name: str, **kwargs: Any) -> GUIEnv:
    """Build the environment registered as `name` with keyword arguments `kwargs`."""
    return build(resolve(name), **kwargs)
