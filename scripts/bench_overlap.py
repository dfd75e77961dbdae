"""Synchronous vs overlapped rounds (data.overlap) on MiniDesk with a simulated VM latency.

    python scripts/bench_overlap.py --out results/overlap                      # 3 seeds x 2 modes
    python scripts/bench_overlap.py --out /tmp/overlap --seeds 1 --epochs 3    # a short check

Each (mode, seed) is one `python train.py +experiment=minidesk_step data.overlap=... seed=S` run
into <out>/<mode>/seed_<S> (skipped when its metrics.csv already has every epoch), with the same
warm start, rollout budget and latency (`--step-latency` 1 s, `--reset-latency` 3 s by default: an
OSWorld-like step of 1-3 s, so the environment dominates the iteration; `--pool threads` so the
envs wait in parallel, as VMs do). Overlapped runs add `algo.is_correction=tis`, the correction
docs/overlap.md recommends for lagged samples. Evaluation is off: it is not part of an RL iteration.

Iteration time is `time/step_s` (from the trainer asking for data to the end of the epoch's last
update), averaged over epochs >= 1 (epoch 0 has nothing to overlap with). The bound is
max(collection, training) per epoch of the synchronous run: collection = `time/rollout_s`, training =
`time/step_s - time/rollout_s` (finishing the round, old log-probs and the updates). The same bound
from the overlapped run's own parts is printed too (max(its collection, `time/step_s -
time/wait_data_s`)): the two runs' trajectories differ, and so do their collection times. Learning: the
rollout success rate against env steps per seed and mode goes to <out>/curves.csv and
<out>/curves.png (each seed thin, the mean over seeds thick).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# overlapped runs use the truncated importance-sampling correction docs/overlap.md recommends for lagged samples
MODES = {"sync": ["data.overlap=false"], "overlap": ["data.overlap=true", "algo.is_correction=tis"]}


def overrides(args: argparse.Namespace, mode: str, seed: int, run_dir: Path) -> list[str]:
    return [
        "+experiment=minidesk_step",
        f"seed={seed}",
        f"rollout={args.pool}",
        *MODES[mode],
        f"trainer.max_epochs={args.epochs}",
        f"data.tasks_per_epoch={args.tasks_per_epoch}",
        f"data.rollouts_per_task={args.rollouts_per_task}",
        f"env.step_latency_s={args.step_latency}",
        f"env.reset_latency_s={args.reset_latency}",
        "~callbacks.evaluation",
        "logger=csv",
        "callbacks.rollout_progress.enabled=false",
        "trainer.enable_progress_bar=false",
        *args.extra,
        f"hydra.run.dir={run_dir}",
    ]


def epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    """One merged row per epoch of metrics.csv (Lightning's CSV logger writes an epoch over several rows)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    merged: dict[int, dict[str, str]] = {}
    for row in csv.DictReader(path.open()):
        if row.get("epoch"):
            merged.setdefault(int(float(row["epoch"])), {}).update({k: v for k, v in row.items() if v != ""})
    return [merged[e] for e in sorted(merged) if "time/step_s" in merged[e]]


def run_missing(args: argparse.Namespace) -> None:
    env = dict(os.environ, WANDB_MODE="disabled")
    for seed in range(args.seeds):
        for mode in MODES:
            run_dir = args.out / mode / f"seed_{seed}"
            if len(epoch_rows(run_dir)) >= args.epochs:
                continue
            began = time.time()
            command = [sys.executable, "train.py", *overrides(args, mode, seed, run_dir)]
            result = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            status = "ok" if result.returncode == 0 else f"FAILED ({result.stderr.strip().splitlines()[-1:]})"
            print(f"{mode} seed {seed}: {status} in {time.time() - began:.0f} s", flush=True)


def mean_after_first(rows: list[dict[str, str]], key: str) -> float:
    values = [float(row[key]) for row in rows[1:] if key in row]
    return statistics.mean(values) if values else float("nan")


def summarise(args: argparse.Namespace) -> None:
    """Per seed: iteration time of both modes, the bound from the synchronous run, waits, lag."""
    lines = [
        "| seed | sync s/iter | overlap s/iter | collection s | training s | bound max(c, t) s | overlap / bound | "
        "bound of the overlapped run s | overlap wait_data s | overlap env_idle s | lag |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed in range(args.seeds):
        sync, overlap = epoch_rows(args.out / "sync" / f"seed_{seed}"), epoch_rows(args.out / "overlap" / f"seed_{seed}")
        if len(sync) < 2 or len(overlap) < 2:
            lines.append(f"| {seed} | missing runs (need >= 2 epochs each) |")
            continue
        collection = [float(r["time/rollout_s"]) for r in sync[1:]]
        training = [float(r["time/step_s"]) - float(r["time/rollout_s"]) for r in sync[1:]]
        bound = statistics.mean(max(c, t) for c, t in zip(collection, training))
        overlapped = mean_after_first(overlap, "time/step_s")
        # the same bound from the overlapped run's own parts (its trajectories differ from the synchronous run's)
        own = statistics.mean(max(float(r["time/rollout_s"]), float(r["time/step_s"]) - float(r["time/wait_data_s"])) for r in overlap[1:])
        lines.append(
            f"| {seed} | {mean_after_first(sync, 'time/step_s'):.2f} | {overlapped:.2f} | {statistics.mean(collection):.2f} | "
            f"{statistics.mean(training):.2f} | {bound:.2f} | {overlapped / bound:.2f} | {own:.2f} | {mean_after_first(overlap, 'time/wait_data_s'):.2f} | "
            f"{mean_after_first(overlap, 'time/env_idle_s'):.2f} | {mean_after_first(overlap, 'time/policy_lag'):.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "summary.md").write_text(table + "\n")
    write_curves(args)


def write_curves(args: argparse.Namespace) -> None:
    """rollout/success_rate against rollout/env_steps_total, per mode and seed (the learning check)."""
    with (args.out / "curves.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mode", "seed", "epoch", "env_steps_total", "success_rate"])
        for mode in MODES:
            for seed in range(args.seeds):
                for epoch, row in enumerate(epoch_rows(args.out / mode / f"seed_{seed}")):
                    writer.writerow([mode, seed, epoch, row.get("rollout/env_steps_total", ""), row.get("rollout/success_rate", "")])
    print(f"curves: {args.out / 'curves.csv'}")
    plot_curves(args)


def plot_curves(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, color in zip(MODES, ("tab:blue", "tab:orange")):
        curves = []
        for seed in range(args.seeds):
            rows = epoch_rows(args.out / mode / f"seed_{seed}")
            x = [float(r["rollout/env_steps_total"]) for r in rows]
            y = [float(r["rollout/success_rate"]) for r in rows]
            if x:
                ax.plot(x, y, color=color, alpha=0.3, linewidth=1)
                curves.append((x, y))
        if curves:
            length = min(len(x) for x, _ in curves)
            mean_x = np.mean([x[:length] for x, _ in curves], axis=0)
            mean_y = np.mean([y[:length] for _, y in curves], axis=0)
            ax.plot(mean_x, mean_y, color=color, linewidth=2.5, label=f"{mode} (mean of {len(curves)} seeds)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("rollout success rate")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Overlapped vs synchronous rounds, MiniDesk, simulated VM latency")
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--tasks-per-epoch", type=int, default=4)
    parser.add_argument("--rollouts-per-task", type=int, default=4)
    parser.add_argument("--step-latency", type=float, default=1.0, help="simulated VM seconds per env step")
    parser.add_argument("--reset-latency", type=float, default=3.0, help="simulated VM seconds per reset")
    parser.add_argument("--pool", default="threads", help="conf/rollout/<pool>.yaml: threads steps the envs' latency in parallel")
    parser.add_argument("--analyze-only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more Hydra overrides for every run (e.g. rollout.pool.num_workers=8)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.analyze_only:
        run_missing(args)
    summarise(args)


if __name__ == "__main__":
    main()
