"""STEP, its ablations and the baselines on MiniDesk at one rollout budget: resumable, one run at a time.

    python scripts/compare_methods.py --out results/comparison            # run what is missing, then analyse
    python scripts/compare_methods.py --out results/comparison --analyze-only

Each (method, seed) is one `python train.py +experiment=minidesk_<method> seed=S ...` run into
<out>/runs/<method>/seed_<S>; a run whose metrics.csv already has its last epoch is skipped, so an
interrupted batch continues where it stopped. Runs go seed-major (every method's seed 0 first), so a
batch cut short still compares every method. Every method gets the same warm start (the shipped tiny
policy), the same rollout budget (B tasks x N rollouts per epoch, the same epochs) and the same
simulated VM latency. The analysis writes <out>/summary.csv, <out>/summary.md (with each method's
time per step and its parts, from its median run) and <out>/success_curves.png (rollout success and
the evaluated training success against env steps and wall-clock; tasks above s0).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = (
    "step", "t_grpo_window", "gigpo", "t_grpo",
    "step_no_srtraj", "step_no_sradv", "step_no_sradv_success_only", "step_no_slgrpo", "step_no_both", "step_decomp_only",
)  # fmt: skip
EXPERIMENT = {"t_grpo": "minidesk_tgrpo", "t_grpo_window": "minidesk_tgrpo_window"}


def fixed_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"trainer.max_epochs={args.epochs}",
        f"data.tasks_per_epoch={args.tasks_per_epoch}",
        f"data.rollouts_per_task={args.rollouts_per_task}",
        f"env.step_latency_s={args.step_latency}",
        f"env.reset_latency_s={args.reset_latency}",
        "env.latency_jitter=0.5",
        f"callbacks.evaluation.every_n_epochs={args.eval_every}",
        f"callbacks.evaluation.max_tasks={args.eval_tasks}",
        "callbacks.evaluation.train_repeats=2",
        "logger=csv",
        "callbacks.rollout_progress.enabled=false",
        "trainer.enable_progress_bar=false",
    ]


def finished(run_dir: Path, epochs: int) -> bool:
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        return False
    rows = list(csv.DictReader(metrics.open()))
    return sum(bool(row.get("time/step_s")) for row in rows) >= epochs


def run_missing(args: argparse.Namespace) -> None:
    env = dict(os.environ, WANDB_MODE="disabled")
    for seed in range(args.seeds):
        for method in args.methods:
            run_dir = args.out / "runs" / method / f"seed_{seed}"
            if finished(run_dir, args.epochs):
                continue
            experiment = EXPERIMENT.get(method, f"minidesk_{method}")
            command = [sys.executable, "train.py", f"+experiment={experiment}", f"seed={seed}", *fixed_overrides(args), f"hydra.run.dir={run_dir}"]
            began = time.time()
            result = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            status = "ok" if result.returncode == 0 else f"FAILED ({result.stderr.strip().splitlines()[-1:]})"
            print(f"{method} seed {seed}: {status} in {time.time() - began:.0f} s", flush=True)


def analyse(args: argparse.Namespace) -> None:
    from steprl.analysis.runs import load_run

    rows = []
    for method in args.methods:
        for seed in range(args.seeds):
            run_dir = args.out / "runs" / method / f"seed_{seed}"
            if not finished(run_dir, args.epochs):
                continue
            run = load_run(run_dir)
            rows.append((method, seed, run))
    write_summary(args, rows)


def metric_series(run, key: str) -> list[tuple[int, float]]:
    """(epoch, value) pairs of one metric of a run."""
    epochs, values = run.series(key)
    return list(zip(epochs.tolist(), values.tolist()))


def last(values: list[tuple[int, float]]) -> float:
    return values[-1][1] if values else float("nan")


def write_summary(args: argparse.Namespace, rows: list) -> None:
    import numpy as np

    from steprl.analysis.plots import TIME_PARTS

    table = []
    for method in args.methods:
        runs = [run for m, _, run in rows if m == method]
        if not runs:
            continue

        def stat(key: str, fn=last) -> tuple[float, float]:
            values = np.array([fn(metric_series(run, key)) for run in runs], dtype=float)
            return float(np.nanmean(values)), float(np.nanstd(values))

        def mean_of(key: str) -> float:
            series = [v for run in runs for _, v in metric_series(run, key)]
            return float(np.mean(series)) if series else float("nan")

        def median_of_runs(key: str) -> float:
            # a run that shared the CPU with another job is slower in every epoch: the median run is robust to one such run
            means = [np.mean([v for _, v in metric_series(run, key)]) for run in runs if metric_series(run, key)]
            return float(np.median(means)) if means else float("nan")

        table.append({
            "method": method,
            "seeds": len(runs),
            "initial_train_success": stat("eval/initial_train_success_rate"),
            "train_success": stat("eval/train_success_rate"),
            "heldout_success": stat("eval/success_rate"),
            "above_s0": stat("tasks/above_s0"),
            "env_steps": stat("rollout/env_steps_total"),
            "step_s": median_of_runs("time/step_s"),
            "optimizer_steps": mean_of("train/optimizer_steps"),
            "samples": mean_of("train/samples"),
            "parts": {key: median_of_runs(key) for key in TIME_PARTS},
        })  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "summary.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "seeds", "initial_train_success", "train_success", "train_success_std", "heldout_success", "heldout_std",
                         "above_s0", "env_steps", "step_s", "optimizer_steps_per_round", "samples_per_round"])  # fmt: skip
        for r in table:
            writer.writerow([r["method"], r["seeds"], f"{r['initial_train_success'][0]:.3f}", f"{r['train_success'][0]:.3f}",
                             f"{r['train_success'][1]:.3f}", f"{r['heldout_success'][0]:.3f}", f"{r['heldout_success'][1]:.3f}",
                             f"{r['above_s0'][0]:.1f}", f"{r['env_steps'][0]:.0f}", f"{r['step_s']:.1f}", f"{r['optimizer_steps']:.1f}",
                             f"{r['samples']:.0f}"])  # fmt: skip
    lines = [
        "| method | seeds | train success before | train success after | held-out | tasks ≥ s0 | env steps | s / step (median run) | optimiser steps / round | samples / round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['method']} | {r['seeds']} | {r['initial_train_success'][0]:.3f} | {r['train_success'][0]:.3f} ± {r['train_success'][1]:.3f} | "
            f"{r['heldout_success'][0]:.3f} ± {r['heldout_success'][1]:.3f} | {r['above_s0'][0]:.1f} | {r['env_steps'][0]:.0f} | "
            f"{r['step_s']:.1f} | {r['optimizer_steps']:.1f} | {r['samples']:.0f} |"
        )
    lines += ["", "Time per step and its parts, seconds (per run: the mean over epochs; then the median run):", "",
              "| method | step | " + " | ".join(key.removeprefix("time/").removesuffix("_s") for key in TIME_PARTS) + " |",
              "|---|---|" + "---|" * len(TIME_PARTS)]  # fmt: skip
    for r in table:
        lines.append(f"| {r['method']} | {r['step_s']:.1f} | " + " | ".join(f"{r['parts'][key]:.2f}" for key in TIME_PARTS) + " |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(args, rows)


def x_of_epochs(run, x_key: str) -> dict[int, float]:
    """epoch -> env steps so far, or -> wall-clock of the steps so far (cumulative time/step_s)."""
    import numpy as np

    pairs = metric_series(run, x_key)
    if x_key == "time/step_s":
        pairs = list(zip([e for e, _ in pairs], np.cumsum([v for _, v in pairs])))
    return dict(pairs)


def training_success_points(run) -> list[tuple[int, float]]:
    """(epoch, eval/train_success_rate): before the first update (as epoch -1) and at every evaluation."""
    before = metric_series(run, "eval/initial_train_success_rate")
    after = metric_series(run, "eval/train_success_rate")
    return [(-1, before[0][1]), *after] if before else after


def plot(args: argparse.Namespace, rows: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    x_axes = (("rollout/env_steps_total", "env steps"), ("time/step_s", "wall-clock of the steps, s (median run)"))
    for method in args.methods:
        runs = [run for m, _, run in rows if m == method]
        if not runs:
            continue
        for row, (y_of, y_label) in enumerate(((lambda run: metric_series(run, "rollout/success_rate"), "rollout success rate"),
                                                (training_success_points, "training success (every task, sampled twice)"))):  # fmt: skip
            for column, (x_key, x_label) in enumerate(x_axes):
                xs, ys = [], []
                for run in runs:
                    x_by_epoch = x_of_epochs(run, x_key)
                    points = y_of(run)
                    xs.append([0.0 if e < 0 else x_by_epoch.get(e, np.nan) for e, _ in points])
                    ys.append([v for _, v in points])
                length = min(len(y) for y in ys)
                # env steps: the mean over seeds; wall-clock: the median run (one run that shared the CPU would skew a mean)
                x = (np.nanmean if column == 0 else np.nanmedian)([x[:length] for x in xs], axis=0)
                axes[row, column].plot(x, np.mean([y[:length] for y in ys], axis=0), marker="o" if row else None, label=method)
                axes[row, column].set_xlabel(x_label)
                axes[row, column].set_ylabel(f"{y_label}, mean over seeds")
        above = [metric_series(run, "tasks/above_s0") for run in runs]
        length = min(len(a) for a in above)
        axes[0, 2].plot([e for e, _ in above[0][:length]], np.mean([[v for _, v in a[:length]] for a in above], axis=0), label=method)
    axes[0, 2].set_xlabel("epoch")
    axes[0, 2].set_ylabel("tasks with ŝ ≥ s0, mean over seeds")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[1, 2].axis("off")
    axes[1, 2].legend(*axes[0, 2].get_legend_handles_labels(), loc="center", fontsize=10)
    fig.suptitle("MiniDesk, tiny policy: success against env steps and wall-clock; tasks above s0")
    fig.tight_layout()
    fig.savefig(args.out / "success_curves.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "comparison")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tasks-per-epoch", type=int, default=8)
    parser.add_argument("--rollouts-per-task", type=int, default=8)
    parser.add_argument("--step-latency", type=float, default=0.05)
    parser.add_argument("--reset-latency", type=float, default=0.2)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-tasks", type=int, default=32)
    parser.add_argument("--analyze-only", action="store_true")
    args = parser.parse_args()
    args.out = args.out.resolve()
    if not args.analyze_only:
        run_missing(args)
    analyse(args)


if __name__ == "__main__":
    main()
