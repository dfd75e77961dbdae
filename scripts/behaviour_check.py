"""Same seed, same metrics: run small deterministic trainings and compare their metrics.csv files.

Used to show that a refactoring keeps every behaviour: run it once on the code before the change
(`--out before`), once after (`--out after`), then `--compare before after`. Runs use the in-process
env pool (deterministic), the CSV logger and a few small epochs; every column except the wall-clock
times (`time/*`) must match exactly.

    python scripts/behaviour_check.py --out /tmp/check/after
    python scripts/behaviour_check.py --compare /tmp/check/before /tmp/check/after
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("minidesk_step", "minidesk_tgrpo", "minidesk_gigpo")
SMALL = [
    "data.tasks_per_epoch=4",
    "data.rollouts_per_task=4",
    "data.batch_size=16",
    "rollout=inprocess",
    "rollout.pool.num_workers=4",
    "logger=csv",
    "trainer.max_epochs=3",
    "callbacks.evaluation.every_n_epochs=3",
    "callbacks.evaluation.max_tasks=4",
    "callbacks.rollout_progress.enabled=false",
    "trainer.enable_progress_bar=false",
    "seed=3",
]


def run_all(out: Path, root: Path) -> None:
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(root / "src"))
    for name in EXPERIMENTS:
        run_dir = out / name
        if (run_dir / "metrics.csv").is_file():
            print(f"{name}: done already")
            continue
        command = [sys.executable, "train.py", f"+experiment={name}", *SMALL, f"hydra.run.dir={run_dir}"]
        subprocess.run(command, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"{name}: {run_dir / 'metrics.csv'}")


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return (math.isnan(x) and math.isnan(y)) or x == y


def compare(before: Path, after: Path) -> int:
    problems = 0
    for name in EXPERIMENTS:
        rows_a, rows_b = read(before / name / "metrics.csv"), read(after / name / "metrics.csv")
        keys = sorted(k for k in set(rows_a[0]) & set(rows_b[0]) if not k.startswith("time/"))
        added = sorted(set(rows_b[0]) - set(rows_a[0]))
        removed = sorted(set(rows_a[0]) - set(rows_b[0]))
        problems += len(removed)  # a metric that disappeared is a change of behaviour
        differing = []
        for key in keys:
            column_a = [row.get(key, "") for row in rows_a]
            column_b = [row.get(key, "") for row in rows_b]
            if len(column_a) != len(column_b) or not all(same(x, y) for x, y in zip(column_a, column_b)):
                differing.append(key)
        compared = len(keys) * max(len(rows_a), len(rows_b))
        print(f"{name}: {len(rows_a)} vs {len(rows_b)} rows, {len(keys)} columns ({compared} values) compared, "
              f"{len(differing)} differ" + (f": {differing}" if differing else "")
              + (f"; new columns: {added}" if added else "") + (f"; MISSING columns: {removed}" if removed else ""))
        problems += len(differing) + (len(rows_a) != len(rows_b))
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="run the experiments into this directory")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.out:
        run_all(args.out.resolve(), args.root.resolve())
    if args.compare:
        return compare(*args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
