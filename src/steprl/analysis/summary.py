"""One row of numbers per run, and their mean ± std over the seeds of a group.

Per run (`summarize_run`):
- final / best training success: the last / largest value logged under the training success key
  (eval/train_success_rate where logged, else rollout/success_rate; `RunSummary.success_key` says
  which; the pre-training eval/initial_* value is not part of "best");
- held-out success: the last eval/success_rate;
- tasks above s0: the last tasks/above_s0 (tasks whose ŝ_i reached s0);
- env steps: the last rollout/env_steps_total (training rollouts only, evaluation not counted);
- s/step: the mean of time/step_s (one RL iteration: rollout + sample building + update);
- wall s: the sum of time/step_s (training wall time; start-up and evaluation not counted).

Runs are grouped (`group_runs`) by their config without the seed (so the seeds of one setting
form a group), or by given config keys. A group's value is the mean over its runs with the sample
standard deviation (ddof = 1) over seeds; NaN values (a key a run never logged) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steprl.analysis.curves import HELDOUT_KEY, training_success_key
from steprl.analysis.runs import Run

#: Config keys that differ between runs of one setting and say nothing about the setting.
RUN_SPECIFIC_KEYS = ("seed", "ckpt_path", "trainer.enable_progress_bar")
RUN_SPECIFIC_PREFIXES = ("paths.", "logger.", "hydra.", "callbacks.rollout_progress.")
SEED_KEYS = ("seed",)

#: The numeric columns of a summary, in table order.
NUMBERS = ("final_success", "best_success", "heldout_success", "above_s0", "env_steps", "step_time", "wall_time")


@dataclass
class RunSummary:
    """The numbers of one run (see the module docstring for their definitions)."""

    run: Run
    label: str
    success_key: str
    final_success: float
    best_success: float
    heldout_success: float
    above_s0: float
    env_steps: float
    step_time: float
    wall_time: float
    epochs: int


@dataclass
class GroupSummary:
    """Runs of one setting (its seeds); `stats(name)` gives (mean, std, n) over them."""

    label: str
    runs: list[RunSummary]

    @property
    def size(self) -> int:
        return len(self.runs)

    @property
    def success_key(self) -> str:
        keys = {r.success_key for r in self.runs}
        return keys.pop() if len(keys) == 1 else "mixed"

    def stats(self, name: str) -> tuple[float, float, int]:
        return mean_std([getattr(r, name) for r in self.runs])


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1, n) of the non-NaN values; std is NaN for n < 2."""
    finite = np.array([v for v in values if not math.isnan(v)], dtype=float)
    n = len(finite)
    if n == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std(ddof=1)) if n > 1 else math.nan, n


def summarize_run(run: Run, label: str | None = None) -> RunSummary:
    """The summary numbers of one run (NaN for a key the run never logged)."""
    key = training_success_key(run)
    _, success = run.series(key)
    _, step_times = run.series("time/step_s")
    epochs = {int(row["epoch"]) for row in run.rows if "epoch" in row}
    return RunSummary(
        run=run,
        label=label or run.name,
        success_key=key,
        final_success=float(success[-1]) if len(success) else math.nan,
        best_success=float(success.max()) if len(success) else math.nan,
        heldout_success=run.last(HELDOUT_KEY),
        above_s0=run.last("tasks/above_s0"),
        env_steps=run.last("rollout/env_steps_total"),
        step_time=float(step_times.mean()) if len(step_times) else math.nan,
        wall_time=float(step_times.sum()) if len(step_times) else math.nan,
        epochs=len(epochs),
    )


# ------------------------------------------------------------------------------------------ labels
def _override_key(override: str) -> str:
    """'+experiment=minidesk_step' -> 'experiment'; 'algo.s0=0.5' -> 'algo.s0'."""
    return override.split("=", 1)[0].lstrip("+~")


def _distinguishing_overrides(runs: Sequence[Run], drop_keys: Sequence[str] = ()) -> list[list[str]]:
    """Per run, its command-line overrides that not every run shares (keys in `drop_keys` dropped)."""
    kept = [[o for o in run.overrides if _override_key(o) not in drop_keys and not o.startswith("hydra.")] for run in runs]
    common = set.intersection(*(set(k) for k in kept)) if kept else set()
    return [[o for o in k if o not in common] for k in kept]


def _setting_key(run: Run) -> tuple:
    """The run's config without its run-specific keys (seed, paths, loggers): equal for the seeds of
    one setting."""
    return tuple(
        sorted(
            (k, repr(v))
            for k, v in run.config.items()
            if k not in RUN_SPECIFIC_KEYS and not k.startswith(RUN_SPECIFIC_PREFIXES)
        )
    )


def _varying_config(runs: Sequence[Run]) -> list[str]:
    """Config keys (run-specific ones and the seed excluded) whose values differ between runs."""
    keys = sorted({k for run in runs for k in run.config})
    varying = []
    for key in keys:
        if key in RUN_SPECIFIC_KEYS or key.startswith(RUN_SPECIFIC_PREFIXES):
            continue
        if len({repr(run.config.get(key)) for run in runs}) > 1:
            varying.append(key)
    return varying


def _unique(labels: list[str], runs: Sequence[Run]) -> list[str]:
    """Labels made unique by appending the sweep directory / run directory name where they clash."""
    out = []
    for label, run in zip(labels, runs):
        if labels.count(label) > 1:
            label = f"{label} [{run.path.parent.name}/{run.name}]".strip()
        out.append(label)
    return out


def run_labels(runs: Sequence[Run]) -> list[str]:
    """A short label per run: its overrides that the other runs do not share (with the seed), or
    the run directory's name when nothing tells the runs apart."""
    distinct = _distinguishing_overrides(runs)
    return _unique([" ".join(d) or run.name for d, run in zip(distinct, runs)], runs)


# ------------------------------------------------------------------------------------------ groups
def group_runs(runs: Sequence[Run], by: Sequence[str] | None = None) -> list[tuple[str, list[Run]]]:
    """(label, runs) per group, in the order of their first run.

    `by=None`: runs whose configs are equal up to the seed (and paths, loggers) form one group, and
    the label is what sets the group apart (its overrides without the seed, else its differing
    config values). `by=["none"]`: one group per run. `by=[KEY, ...]`: one group per value of those
    config keys (dotted, e.g. "algo.s0"), labelled "KEY=VALUE ...".
    """
    if by and list(by) == ["none"]:
        return list(zip(run_labels(runs), [[run] for run in runs]))
    if by:
        missing = [key for key in by if all(key not in run.config for run in runs)]
        if missing:
            raise KeyError(f"--group-by: no run has the config key(s) {missing}; use dotted keys such as algo.s0 or algo.name.")
        groups: dict[tuple, list[Run]] = {}
        for run in runs:
            groups.setdefault(tuple(repr(run.config.get(key)) for key in by), []).append(run)
        return [
            (" ".join(f"{key}={members[0].config.get(key)}" for key in by), members) for members in groups.values()
        ]

    by_setting: dict[tuple, list[Run]] = {}
    for run in runs:
        by_setting.setdefault(_setting_key(run), []).append(run)
    members_list = list(by_setting.values())
    if len(members_list) == 1:
        distinct = _distinguishing_overrides(runs, drop_keys=SEED_KEYS)
        label = " ".join(o for o in distinct[0] if all(o in d for d in distinct)) if distinct else ""
        return [(label or _common_parent(members_list[0]), members_list[0])]

    firsts = [members[0] for members in members_list]
    distinct_by_run = dict(zip(map(id, runs), _distinguishing_overrides(runs, drop_keys=SEED_KEYS)))
    varying = _varying_config(firsts)
    labels = []
    for members in members_list:
        shared = [o for o in distinct_by_run[id(members[0])] if all(o in distinct_by_run[id(m)] for m in members)]
        label = " ".join(shared)
        if not label or label in labels:
            label = " ".join(f"{k}={members[0].config.get(k)}" for k in varying[:4]) or members[0].name
        labels.append(label)
    return list(zip(_unique(labels, firsts), members_list))


def _common_parent(runs: Sequence[Run]) -> str:
    parents = {run.path.parent.name for run in runs}
    return parents.pop() if len(parents) == 1 and len(runs) > 1 else runs[0].name


def summarize(runs: Sequence[Run], by: Sequence[str] | None = None) -> list[GroupSummary]:
    """Summaries of the runs that have metrics, grouped (see `group_runs`); runs without metrics
    (failed before their first epoch) are left out: list them with `failed_runs`."""
    with_metrics = [run for run in runs if run.has_metrics]
    if not with_metrics:
        return []
    labels = dict(zip(map(id, with_metrics), run_labels(with_metrics)))
    return [
        GroupSummary(label, [summarize_run(run, labels[id(run)]) for run in members])
        for label, members in group_runs(with_metrics, by)
    ]


def failed_runs(runs: Sequence[Run]) -> list[Run]:
    """Runs that wrote error.txt (a multirun job that crashed) or never logged a metric."""
    return [run for run in runs if run.failed or not run.has_metrics]
