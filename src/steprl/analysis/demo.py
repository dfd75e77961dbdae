"""Demo data: synthetic run directories in train.py's layout, for trying the notebook without
training (`python -m steprl.analysis.demo DIR` writes a small threshold sweep into DIR) and for the tests."""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from steprl.analysis.runs import CONFIG_FILE, ERROR_FILE, METRICS_FILE, OVERRIDES_FILE


def write_run(
    path: str | Path,
    config: Mapping[str, Any],
    rows: Sequence[Mapping[str, float]] = (),
    overrides: Sequence[str] = (),
    error: str | None = None,
) -> Path:
    """A run directory: .hydra/config.yaml, .hydra/overrides.yaml, metrics.csv (columns epoch, step
    and the union of the rows' keys, blank where a row lacks a key) and error.txt when `error`."""
    path = Path(path)
    (path / CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(dict(config)), path / CONFIG_FILE)
    OmegaConf.save(OmegaConf.create(list(overrides)), path / OVERRIDES_FILE)
    if rows:
        keys = sorted({key for row in rows for key in row} - {"epoch", "step"})
        with (path / METRICS_FILE).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["epoch", "step", *keys], restval="")
            writer.writeheader()
            writer.writerows(rows)
    if error is not None:
        (path / ERROR_FILE).write_text(error)
    return path


def config(s0: float = 0.6, s_low: float = 0.2, seed: int = 0, name: str = "step") -> dict[str, Any]:
    """A config with the keys the analysis reads (the rest of train.yaml is not needed)."""
    return {
        "algo": {"name": name, "s0": s0, "s_low": s_low},
        "data": {"tasks_per_epoch": 2, "rollouts_per_task": 4},
        "seed": seed,
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
        "task_name": "train",
    }


def training_rows(success: Sequence[float], seed: int = 0, epochs_per_eval: int = 2) -> list[dict[str, float]]:
    """Plausible metrics.csv rows for a run whose rollout success follows `success` (one per epoch):
    time/* parts that add up to time/step_s, eval/* every `epochs_per_eval` epochs and at the end."""
    rng = np.random.default_rng(seed)
    rows = []
    env_steps_total = 0.0
    for epoch, rate in enumerate(success):
        env_steps = float(8 * 3 + rng.integers(0, 8))
        env_steps_total += env_steps
        parts = {
            "time/env_s": 0.2 + 0.1 * rng.random(),
            "time/generate_s": 1.5 + rng.random(),
            "time/augment_s": 0.1 * rng.random(),
            "time/old_logprob_s": 0.3,
            "time/update_s": 0.8 + 0.2 * rng.random(),
            "time/other_s": 0.05,
        }
        row = {
            "epoch": epoch,
            "step": epoch,
            "rollout/success_rate": rate,
            "rollout/env_steps": env_steps,
            "rollout/env_steps_total": env_steps_total,
            "tasks/above_s0": float(round(4 * rate)),
            "train/loss": float(-0.5 * rate),
            **parts,
            "time/rollout_s": parts["time/env_s"] + parts["time/generate_s"],
            "time/step_s": sum(parts.values()),
        }
        if epoch == 0:
            row["eval/initial_train_success_rate"] = max(0.0, rate - 0.1)
            row["eval/initial_success_rate"] = max(0.0, rate - 0.15)
        if (epoch + 1) % epochs_per_eval == 0 or epoch == len(success) - 1:
            row["eval/train_success_rate"] = min(1.0, rate + 0.05)
            row["eval/success_rate"] = max(0.0, rate - 0.05)
        rows.append(row)
    return rows


def demo_sweep(root: str | Path, seeds: Sequence[int] = (0, 1), epochs: int = 6) -> Path:
    """A 2 × 2 threshold sweep (s0 ∈ {0.5, 0.6} × s_low ∈ {0.1, 0.2}) with `seeds`, in multirun
    layout (`<job num>_<overrides>`), plus one job that crashed (error.txt, no metrics)."""
    root = Path(root)
    job = 0
    for s0 in (0.5, 0.6):
        for s_low in (0.1, 0.2):
            for seed in seeds:
                overrides = [f"algo.s0={s0}", f"algo.s_low={s_low}", f"seed={seed}"]
                start = 0.2 + 0.1 * seed
                slope = 0.05 + 0.1 * (s0 - 0.5) + 0.05 * (0.2 - s_low)
                success = [min(1.0, start + slope * e) for e in range(epochs)]
                write_run(root / f"{job}_{','.join(overrides)}", config(s0, s_low, seed), training_rows(success, seed), overrides)
                job += 1
    overrides = ["algo.s0=0.7", "algo.s_low=0.1", "seed=0"]
    write_run(root / f"{job}_{','.join(overrides)}", config(0.7, 0.1, 0), (), overrides, error="Traceback ...\nRuntimeError: worker died\n")
    return root


if __name__ == "__main__":
    print(demo_sweep(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo/multiruns/demo"))
