"""Fake `android_world.task_evals.task_eval.TaskEval`: AndroidWorld's task lifecycle rules
(initialize_task once per instance, is_successful only after it, tear_down resets it)."""

from __future__ import annotations

import abc
import random
from typing import Any


class TaskEval(abc.ABC):
    template = ""
    start_on_home_screen = True

    def __init__(self, params: dict[str, Any]):
        self.initialized = False
        missing = [k for k in self.schema.get("required", []) if k not in params]
        if missing:
            raise ValueError(f"{self.name}: params lack {missing}")
        self._params = params

    @property
    @abc.abstractmethod
    def complexity(self) -> float: ...

    @property
    def name(self) -> str:
        return self.__class__.__name__

    @property
    @abc.abstractmethod
    def app_names(self) -> tuple[str, ...]: ...

    @property
    @abc.abstractmethod
    def schema(self) -> dict[str, Any]: ...

    @property
    def params(self) -> dict[str, Any]:
        return self._params

    @property
    def goal(self) -> str:
        return self.template.format(**self.params)

    @classmethod
    @abc.abstractmethod
    def generate_random_params(cls) -> dict[str, Any]: ...

    def initialize_task(self, env: Any) -> None:
        env.interaction_cache = ""
        if self.initialized:
            raise RuntimeError(f"{self.name}.initialize_task() is already called.")
        self.initialized = True
        seed = self.params.get("seed")
        if seed is not None:
            random.seed(seed)

    def _check_is_initialized(self) -> None:
        if not self.initialized:
            raise RuntimeError(f"{self.name}.initialize_task() must be called before {self.name}.is_successful().")

    def is_successful(self, env: Any) -> float:
        self._check_is_initialized()
        return 1.0

    def tear_down(self, env: Any) -> None:
        env.tear_downs.append(self.name)
        self.initialized = False
