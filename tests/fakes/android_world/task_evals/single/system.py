"""A few fake AndroidWorld tasks over the fake phone (interface.FakeAsyncAndroidEnv)."""

from __future__ import annotations

import random
from typing import Any

from android_world.task_evals import task_eval

_NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov")
_PLAYLISTS = ("Road trip", "Focus", "Morning", "Chill")


class SystemWifiTurnOn(task_eval.TaskEval):
    """'Turn wifi on.' (complexity 1 -> 10 steps)."""

    app_names = ("settings",)
    complexity = 1
    schema = {"type": "object", "properties": {}}
    template = "Turn wifi on."

    @classmethod
    def generate_random_params(cls) -> dict[str, Any]:
        return {}

    def initialize_task(self, env: Any) -> None:
        super().initialize_task(env)
        env.wifi_on = False

    def is_successful(self, env: Any) -> float:
        super().is_successful(env)
        return 1.0 if env.wifi_on else 0.0


class SystemWifiTurnOff(SystemWifiTurnOn):
    template = "Turn wifi off."

    def initialize_task(self, env: Any) -> None:
        task_eval.TaskEval.initialize_task(self, env)
        env.wifi_on = True

    def is_successful(self, env: Any) -> float:
        task_eval.TaskEval.is_successful(self, env)
        return 0.0 if env.wifi_on else 1.0


class ContactsAddContact(task_eval.TaskEval):
    """Type a random name (complexity 2.5 -> 25 steps)."""

    app_names = ("contacts",)
    complexity = 2.5
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    template = "Create a new contact for {name}."

    @classmethod
    def generate_random_params(cls) -> dict[str, Any]:
        return {"name": random.choice(_NAMES)}

    def initialize_task(self, env: Any) -> None:
        super().initialize_task(env)
        env.field_text = ""

    def is_successful(self, env: Any) -> float:
        super().is_successful(env)
        return 1.0 if env.field_text == self.params["name"] else 0.0


class RetroPlaylistCount(task_eval.TaskEval):
    """An information-retrieval task: the answer is read from env.interaction_cache."""

    app_names = ("retro music",)
    complexity = 1.5
    schema = {"type": "object", "properties": {"playlist": {"type": "string"}, "count": {"type": "integer"}},
              "required": ["playlist", "count"]}  # fmt: skip
    template = "How many songs are in the playlist {playlist}?"

    @classmethod
    def generate_random_params(cls) -> dict[str, Any]:
        return {"playlist": random.choice(_PLAYLISTS), "count": random.randint(1, 30)}

    def is_successful(self, env: Any) -> float:
        super().is_successful(env)
        return 1.0 if env.interaction_cache.strip() == str(self.params["count"]) else 0.0


class ClockTimerEntry(task_eval.TaskEval):
    """Partial credit: 0.5 per condition (complexity 4 -> 40 steps; difficulty capped at 5)."""

    app_names = ("clock",)
    complexity = 4
    schema = {"type": "object", "properties": {}}
    template = "Open the clock app and turn wifi on."
    start_on_home_screen = False

    @classmethod
    def generate_random_params(cls) -> dict[str, Any]:
        return {}

    def is_successful(self, env: Any) -> float:
        super().is_successful(env)
        return 0.5 * ((env.current_app or "").endswith("deskclock")) + 0.5 * env.wifi_on
