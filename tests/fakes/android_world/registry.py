"""Fake `android_world.registry.TaskRegistry`: families -> {task name: TaskEval class}."""

from __future__ import annotations

from typing import Any

from android_world.task_evals.single import system


class TaskRegistry:
    ANDROID_WORLD_FAMILY = "android_world"
    ANDROID_FAMILY = "android"
    INFORMATION_RETRIEVAL_FAMILY = "information_retrieval"
    MINIWOB_FAMILY = "miniwob"
    MINIWOB_FAMILY_SUBSET = "miniwob_subset"

    _ANDROID = (system.SystemWifiTurnOn, system.SystemWifiTurnOff, system.ContactsAddContact, system.ClockTimerEntry)
    _IR = (system.RetroPlaylistCount,)

    def get_registry(self, family: str) -> Any:
        android = {cls.__name__: cls for cls in self._ANDROID}
        retrieval = {cls.__name__: cls for cls in self._IR}
        if family == self.ANDROID_WORLD_FAMILY:
            return {**android, **retrieval}
        if family == self.ANDROID_FAMILY:
            return android
        if family == self.INFORMATION_RETRIEVAL_FAMILY:
            return retrieval
        if family in (self.MINIWOB_FAMILY, self.MINIWOB_FAMILY_SUBSET):
            return {}
        raise ValueError(f"Unsupported family: {family}")
