"""Finished training runs on disk: find them, read their config and metrics.

A run directory is what `python train.py` leaves behind: `.hydra/config.yaml` (the composed config,
interpolations unresolved), `.hydra/overrides.yaml` (the command-line overrides), `metrics.csv`
(Lightning's CSVLogger: `epoch`, `step` and one column per metric key, a blank cell where a key was
not logged on that row) and, for a multirun job that crashed, `error.txt`. A sweep directory holds
one run directory per job (`<job num>_<overrides>`, see conf/hydra/default.yaml).

Nothing here imports torch, Lightning or the training code: reading runs must stay cheap.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from steprl.errors import RunDirError


CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
METRICS_FILE = "metrics.csv"
ERROR_FILE = "error.txt"




@dataclass
class Run:
    """One training run read from its directory.

    `config` is the composed config flattened to dotted keys ("algo.s0" -> 0.6); interpolations stay
    as their text ("${seed}"). `rows` are the rows of metrics.csv with the blank cells left out.
    `error` is the traceback a failed multirun job wrote (None for a run that did not fail).
    """

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def has_metrics(self) -> bool:
        return bool(self.rows)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of one metric key, in logging order, one value per epoch (the last one
        logged for that epoch wins: a resumed run may log an epoch twice)."""
        by_epoch: dict[int, float] = {}
        for row in self.rows:
            if key in row and "epoch" in row:
                by_epoch[int(row["epoch"])] = row[key]
        epochs = np.array(sorted(by_epoch), dtype=int)
        return epochs, np.array([by_epoch[e] for e in epochs], dtype=float)

    def logged(self, key: str) -> bool:
        return any(key in row for row in self.rows)

    def last(self, key: str) -> float:
        """The value of `key` at the last epoch it was logged (NaN if never)."""
        _, values = self.series(key)
        return float(values[-1]) if len(values) else math.nan


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"algo": {"s0": 0.6}} -> {"algo.s0": 0.6}; lists stay values (tags: [a, b])."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv as a list of {column: float}, blank cells left out."""
    rows = []
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key, text in raw.items():
                if key is None or text in (None, ""):
                    continue
                try:
                    row[key] = float(text)
                except ValueError:  # a non-numeric column (none today): not a metric
                    continue
            rows.append(row)
    return rows


def is_run_dir(path: Path) -> bool:
    """A run directory has a Hydra config (metrics.csv may be missing if the job failed early)."""
    return (path / CONFIG_FILE).is_file()


def load_run(path: str | Path) -> Run:
    """Read one run directory (config, overrides, metrics, error)."""
    path = Path(path)
    if not is_run_dir(path):
        raise RunDirError(f"{path} is not a run directory: it has no {CONFIG_FILE} (give a directory written by train.py).")
    config = OmegaConf.to_container(OmegaConf.load(path / CONFIG_FILE), resolve=False) or {}
    overrides_path = path / OVERRIDES_FILE
    overrides = OmegaConf.to_container(OmegaConf.load(overrides_path)) if overrides_path.is_file() else []
    metrics_path = path / METRICS_FILE
    error_path = path / ERROR_FILE
    return Run(
        path=path,
        config=flatten(config),
        overrides=[str(o) for o in overrides or []],
        rows=read_metrics(metrics_path) if metrics_path.is_file() else [],
        error=error_path.read_text() if error_path.is_file() else None,
    )


def _job_order(path: Path) -> tuple[int, int, str]:
    """Sort key of a multirun job directory: its job number (the prefix before "_"), then the name."""
    head = path.name.split("_", 1)[0]
    return (0, int(head), path.name) if head.isdigit() else (1, 0, path.name)


def expand_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories from a mix of run directories and sweep directories (each sweep directory
    expands to its job directories, in job order). Duplicates are dropped, order is kept."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise RunDirError(f"{path} does not exist or is not a directory.")
        if is_run_dir(path):
            candidates = [path]
        else:
            candidates = sorted((p for p in path.iterdir() if p.is_dir() and is_run_dir(p)), key=_job_order)
            if not candidates:
                raise RunDirError(
                    f"{path} is neither a run directory (no {CONFIG_FILE}) nor a sweep directory (no job "
                    "directories inside it); give the directory train.py printed for the run or multirun."
                )
        for candidate in candidates:
            if candidate.resolve() not in {p.resolve() for p in found}:
                found.append(candidate)
    return found


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run under `paths` (run or sweep directories)."""
    return [load_run(path) for path in expand_run_dirs(paths)]


def latest_sweep_dir(root: str | Path = "outputs") -> Path | None:
    """The newest multirun directory under `root` (outputs/<task_name>/multiruns/<time>), or None."""
    root = Path(root)
    sweeps = [p for p in root.glob("*/multiruns/*") if p.is_dir()]
    return max(sweeps, key=lambda p: p.stat().st_mtime) if sweeps else None
