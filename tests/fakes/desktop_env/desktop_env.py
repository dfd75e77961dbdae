"""Fake `desktop_env.desktop_env.DesktopEnv`: OSWorld's signatures and return types, no VM.

What it mirrors (OSWorld's desktop_env/desktop_env.py): the constructor's keyword names and
defaults (the VM "boots" in the constructor), `reset(task_config=...)` returning the observation
dict only, `step(action, pause=...)` returning the old-gym 4-tuple with reward 0 and done only for
DONE / FAIL, screenshots as PNG bytes, the accessibility tree as an XML string when asked for,
and `evaluate()` -> float with the infeasible rule (1 only if the last action was FAIL) and the
"FAIL means 0" rule for every other task. Strictness: keyword arguments only, types checked,
pyautogui code must be Python that calls pyautogui/time functions only; `reset`'s
task_config and `step`'s pause must be passed by name.

Metrics understood by `evaluate()` (a tiny stand-in for OSWorld's metric functions):
- "infeasible";
- "fake_commands_include": expected {"type": "rule", "rules": {"include": [...], "exclude": [...]}}
  -> 1.0 when every `include` string occurs in the executed commands and no `exclude` string does;
- "fake_fraction": options {"value": x} -> x (a partial score).
A list of funcs combines with `conj` "and" (0 if one is 0, else the mean) or "or" (1 if one is 1,
else the max), as OSWorld does.
"""

from __future__ import annotations

import ast
import io
from typing import Any

from PIL import Image

PROVIDERS = ("vmware", "virtualbox", "aws", "amazon web services", "azure", "docker", "aliyun", "volcengine")
ACTION_SPACES = ("computer_13", "pyautogui", "claude_computer_use", "autoglm_computer_use")
OS_TYPES = ("Ubuntu", "Windows")
SPECIAL_ACTIONS = ("WAIT", "FAIL", "DONE")
_ALLOWED_MODULES = ("pyautogui", "time")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise TypeError(f"fake DesktopEnv: {message}")


def _check_code(code: str) -> None:
    """The code must parse and call only pyautogui.* / time.* functions (what OSWorld runs)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            _check(
                isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in _ALLOWED_MODULES,
                f"unexpected call in pyautogui code: {ast.unparse(node)}",
            )
    for statement in tree.body:
        _check(isinstance(statement, ast.Expr), f"unexpected statement in pyautogui code: {ast.unparse(statement)}")


class DesktopEnv:
    """A desktop that records the commands it is given and draws how many it has run."""

    instances_created = 0  # how many "VMs" were booted in this process (tests read it)

    def __init__(
        self,
        *,
        provider_name: str = "vmware",
        region: str | None = None,
        path_to_vm: str | None = None,
        snapshot_name: str = "init_state",
        action_space: str = "pyautogui",
        cache_dir: str = "cache",
        screen_size: tuple = (1920, 1080),
        headless: bool = False,
        require_a11y_tree: bool = True,
        require_terminal: bool = False,
        os_type: str = "Ubuntu",
        enable_proxy: bool = False,
        client_password: str = "",
    ):
        _check(provider_name in PROVIDERS, f"unknown provider_name {provider_name!r}")
        _check(region is None or isinstance(region, str), "region must be a str or None")
        _check(path_to_vm is None or isinstance(path_to_vm, str), "path_to_vm must be a str or None")
        _check(isinstance(snapshot_name, str), "snapshot_name must be a str")
        _check(action_space in ACTION_SPACES, f"action_space must be one of {ACTION_SPACES}")
        _check(isinstance(cache_dir, str), "cache_dir must be a str")
        _check(
            isinstance(screen_size, tuple) and len(screen_size) == 2 and all(type(v) is int and v > 0 for v in screen_size),
            f"screen_size must be a tuple of two positive ints, got {screen_size!r}",
        )
        for name, value in (("headless", headless), ("require_a11y_tree", require_a11y_tree),
                            ("require_terminal", require_terminal), ("enable_proxy", enable_proxy)):  # fmt: skip
            _check(isinstance(value, bool), f"{name} must be a bool, got {value!r}")
        _check(os_type in OS_TYPES, f"os_type must be one of {OS_TYPES}")
        _check(isinstance(client_password, str), "client_password must be a str")
        self.provider_name = provider_name
        self.path_to_vm = path_to_vm
        self.action_space = action_space
        self.screen_size = screen_size
        self.headless = headless
        self.require_a11y_tree = require_a11y_tree
        self.require_terminal = require_terminal
        self.os_type = os_type
        self.instruction: str | None = None
        self.evaluator: dict[str, Any] = {}
        self.action_history: list[Any] = []
        self.commands: list[str] = []
        self.pauses: list[float] = []
        self.resets = 0
        self.evaluations = 0
        self.closed = False
        DesktopEnv.instances_created += 1  # the real constructor boots the VM here

    # -- gym-like API (old-gym shapes) ---------------------------------------------------------

    def reset(self, *, task_config: dict[str, Any] | None = None, seed: Any = None, options: Any = None) -> dict[str, Any]:
        _check(not self.closed, "reset() after close()")
        _check(isinstance(task_config, dict), "task_config must be the task JSON dict")
        for key in ("id", "instruction", "evaluator"):
            _check(key in task_config, f"task_config has no {key!r}")
        _check(isinstance(task_config.get("config", []), list), "task_config['config'] must be a list")
        self.task_id = task_config["id"]
        self.instruction = task_config["instruction"]
        self.evaluator = task_config["evaluator"]
        self.action_history, self.commands = [], []
        self.resets += 1
        return self._get_obs()

    def step(self, action: Any, *, pause: float = 2) -> tuple[dict[str, Any], int, bool, dict[str, Any]]:
        _check(not self.closed, "step() after close()")
        _check(self.instruction is not None, "step() before reset()")
        _check(isinstance(pause, (int, float)) and not isinstance(pause, bool), "pause must be a number")
        self.action_history.append(action)
        self.pauses.append(float(pause))
        done, info = False, {}
        if isinstance(action, dict):
            action = action.get("action_type", action.get("command"))
        _check(isinstance(action, str), f"action must be a str or dict, got {type(action).__name__}")
        if action == "FAIL":
            done, info = True, {"fail": True}
        elif action == "DONE":
            done, info = True, {"done": True}
        elif action != "WAIT":
            _check(self.action_space == "pyautogui", "code actions need action_space='pyautogui'")
            _check_code(action)
            self.commands.append(action)
        return self._get_obs(), 0, done, info

    def evaluate(self) -> float:
        _check(self.instruction is not None, "evaluate() before reset()")
        self.evaluations += 1
        func = self.evaluator.get("func")
        last = self.action_history[-1] if self.action_history else None
        if func == "infeasible":
            return 1 if last == "FAIL" else 0
        if last == "FAIL":
            return 0
        funcs = func if isinstance(func, list) else [func]
        expected = self.evaluator.get("expected", {})
        options = self.evaluator.get("options", {})
        expected = expected if isinstance(expected, list) else [expected] * len(funcs)
        options = options if isinstance(options, list) else [options] * len(funcs)
        scores = [self._metric(f, e, o) for f, e, o in zip(funcs, expected, options)]
        if len(scores) == 1:
            return float(scores[0])
        if self.evaluator.get("conj", "and") == "and":
            return 0 if any(s == 0 for s in scores) else sum(scores) / len(scores)
        return 1 if any(s == 1 for s in scores) else max(scores)

    def close(self) -> None:
        self.closed = True

    # -- internals -----------------------------------------------------------------------------

    def _metric(self, func: str, expected: dict[str, Any], options: dict[str, Any]) -> float:
        if func == "fake_commands_include":
            rules = expected.get("rules", {})
            text = "\n".join(self.commands)
            ok = all(s in text for s in rules.get("include", [])) and not any(s in text for s in rules.get("exclude", []))
            return 1.0 if ok else 0.0
        if func == "fake_fraction":
            return float(options["value"])
        raise ValueError(f"fake DesktopEnv: unknown metric {func!r}")

    def _get_obs(self) -> dict[str, Any]:
        shade = (40 * len(self.commands)) % 256
        image = Image.new("RGB", self.screen_size, (shade, 128, 255 - shade))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {
            "screenshot": buffer.getvalue(),
            "accessibility_tree": f"<desktop commands='{len(self.commands)}'/>" if self.require_a11y_tree else None,
            "terminal": "" if self.require_terminal else None,
            "instruction": self.instruction,
        }
