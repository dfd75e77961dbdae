"""OSWorld tasks: index files, task JSONs, the Task records steprl makes of them (no VM needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steprl.types import Task

#: OSWorld has no difficulty labels; multi-app tasks are the long ones (steprl's 1..5 scale).
DIFFICULTY = {"multi_apps": 5}
DEFAULT_DIFFICULTY = 3


def read_index(path: Path) -> list[tuple[str | None, str]]:
    """(domain or None, id) pairs from an index file (formats: see the steprl.envs.osworld docstring)."""
    if not path.is_file():
        raise FileNotFoundError(f"OSWorld task index {path} does not exist; check env.train_index / env.test_index.")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            return [(str(domain), str(task)) for domain, ids in data.items() for task in ids]
        if isinstance(data, list):
            return [_split_entry(str(entry)) for entry in data]
        raise ValueError(f"{path}: expected {{domain: [ids]}} or a list of ids, got {type(data).__name__}")
    entries = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [_split_entry(entry) for entry in entries if entry]


def _split_entry(entry: str) -> tuple[str | None, str]:
    domain, _, task = entry.rpartition("/")
    return (domain or None), task


def check_task_json(data: Any, path: Path) -> dict[str, Any]:
    """The task JSON, checked for the keys steprl and DesktopEnv.reset need."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an OSWorld task must be a JSON object")
    missing = [key for key in ("id", "instruction", "evaluator") if key not in data]
    if missing:
        raise ValueError(f"{path}: the task JSON lacks {', '.join(missing)} (OSWorld schema: id, instruction, config, evaluator, ...)")
    if not isinstance(data["evaluator"], dict) or "func" not in data["evaluator"]:
        raise ValueError(f"{path}: evaluator must be an object with a 'func'")
    if not isinstance(data.get("config", []), list):
        raise ValueError(f"{path}: config must be a list of setup steps")
    return data


#: Set-up steps and evaluator getters that need the user's own Google account (OSWorld reads
#: evaluation_examples/settings/googledrive/settings.yml and client secrets the repository does not ship).
CREDENTIAL_SETUPS = frozenset({"googledrive", "login"})
CREDENTIAL_GETTERS = frozenset({"googledrive_file"})


def needs_credentials(task_json: dict[str, Any]) -> bool:
    """True for tasks whose set-up or evaluation signs in to Google Drive: without credentials
    their set-up always fails (a VM boot per retry) and they silently leave the denominator."""
    steps = [s.get("type") for s in task_json.get("config") or [] if isinstance(s, dict)]
    evaluator = task_json.get("evaluator") or {}
    getters = []
    for key in ("result", "expected"):
        entry = evaluator.get(key)
        getters += [g.get("type") for g in (entry if isinstance(entry, list) else [entry]) if isinstance(g, dict)]
    return bool(CREDENTIAL_SETUPS.intersection(steps) or CREDENTIAL_GETTERS.intersection(getters))


def is_infeasible(task_json: dict[str, Any]) -> bool:
    """OSWorld's infeasible tasks: evaluator func "infeasible" (the right answer is FAIL)."""
    func = task_json["evaluator"]["func"]
    return func == "infeasible" or (isinstance(func, list) and "infeasible" in func)


class TaskStore:
    """Reads OSWorld task JSONs from a checkout, by (domain, id) or by id alone."""

    def __init__(self, examples: Path):
        if not examples.is_dir():
            raise FileNotFoundError(
                f"{examples} does not exist: env.osworld_root must be a checkout of https://github.com/xlang-ai/OSWorld "
                "(git clone https://github.com/xlang-ai/OSWorld) and env.examples_dir its task folder."
            )
        self.examples = examples
        self._domains: dict[str, str] | None = None  # id -> domain, built on the first bare id

    def load(self, domain: str | None, task: str) -> tuple[str, dict[str, Any]]:
        if domain is None:
            domain = self._domain_of(task)
        path = self.examples / domain / f"{task}.json"
        if not path.is_file():
            raise FileNotFoundError(f"OSWorld task {domain}/{task} not found at {path}")
        return domain, check_task_json(json.loads(path.read_text()), path)

    def _domain_of(self, task: str) -> str:
        if self._domains is None:
            self._domains = {p.stem: p.parent.name for p in self.examples.glob("*/*.json")}
        if task not in self._domains:
            raise FileNotFoundError(f"OSWorld task id {task} is in no domain folder of {self.examples}")
        return self._domains[task]


def load_tasks(
    index: Path,
    store: TaskStore,
    split: str,
    domains: set[str] | None = None,
    exclude_credential_tasks: bool = False,
    excluded: list[str] | None = None,
) -> list[Task]:
    """The Tasks an index file lists (in its order, without duplicates, kept `domains` only;
    without the tasks that need Google credentials when `exclude_credential_tasks`, whose ids are
    appended to `excluded`).

    Task: id "domain/id", family = domain, config = {"domain", "task": the JSON}, feasible =
    not infeasible, difficulty 5 for multi_apps and 3 otherwise.
    """
    tasks, seen = [], set()
    for domain, task_name in read_index(index):
        if domains is not None and domain is not None and domain not in domains:
            continue
        domain, data = store.load(domain, task_name)
        task_id = f"{domain}/{data['id']}"
        if (domains is not None and domain not in domains) or task_id in seen:
            continue
        seen.add(task_id)
        if exclude_credential_tasks and needs_credentials(data):
            if excluded is not None:
                excluded.append(task_id)
            continue
        tasks.append(
            Task(
                id=task_id,
                family=domain,
                instruction=str(data["instruction"]),
                difficulty=DIFFICULTY.get(domain, DEFAULT_DIFFICULTY),
                split=split,
                config={"domain": domain, "task": data},
                feasible=not is_infeasible(data),
            )
        )
    return tasks
