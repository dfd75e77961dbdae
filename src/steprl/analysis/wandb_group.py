"""The W&B group of a run: one group per multirun, so a sweep's jobs sit together on the dashboard.

A single run is grouped by its task name (conf/logger/wandb.yaml's default). The jobs of one
multirun share their sweep directory, so the group is named after it: the sweep directory
`outputs/minidesk_step/multiruns/thresholds_2025-06-01_12-00-00` gives the group
`minidesk_step/thresholds_2025-06-01_12-00-00` (a sweep directory elsewhere gives its own name).
Every job computes the same name on its own; the experiment a job selects (its task_name) does not
change it.
"""

from __future__ import annotations

from pathlib import Path


def multirun_group(sweep_dir: str | Path) -> str:
    """'<name>/<sweep dir name>' for '<...>/<name>/multiruns/<sweep dir name>', else the sweep
    directory's own name."""
    path = Path(sweep_dir)
    if path.parent.name == "multiruns" and path.parent.parent.name:
        return f"{path.parent.parent.name}/{path.name}"
    return path.name


def wandb_group(default: str) -> str:
    """The W&B group of the current Hydra job: `multirun_group(hydra.sweep.dir)` in a multirun,
    `default` (the task name) otherwise (also outside @hydra.main, e.g. in tests)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):  # not under @hydra.main
        return default
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return default
    return multirun_group(hydra_cfg.sweep.dir)
