"""Reproduce the paper's comparisons in miniature on MiniDesk; writes results/ablation_20ep/ by default.

    python scripts/reproduce.py                          # STEP, its ablations, T-GRPO, GiGPO x 3 seeds
    python scripts/reproduce.py --preset first_experiment  # T-GRPO vs GiGPO vs STEP w/o both, 20-task subset
    python scripts/reproduce.py --preset thresholds      # the s0 x s_low sensitivity grid (STEP)
    python scripts/reproduce.py --analyze-only            # re-analyse finished runs

Every method runs with the same budget (B tasks x N rollouts per epoch, the same epochs) and the
same seeds, as ONE Hydra multirun of `train.py` (the presets in conf/sweep/), with simulated VM-like
environment latency (MiniDesk's step/reset latency with jitter) so that the time per step has the
shape of GUI training: environment interaction dominates the rollout. Then it writes into --out:

- README.md: the machine, the exact command, the settings, the table (mean ± std over seeds of
  final training success, held-out success, tasks above s0, env steps, time per step), STEP's time
  per step as a fraction of T-GRPO's, and each method's framework overhead (time/other_s as a share
  of time/step_s) with the split of the step into its parts;
- summary.md / summary.csv and the figures: success vs epoch and vs env steps, tasks above s0 vs
  epoch, time per step split into its parts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from steprl.analysis.plots import TIME_PARTS

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="ablation", choices=["ablation", "first_experiment", "thresholds"], help="conf/sweep preset")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--tasks-per-epoch", type=int, default=16, help="B")
    parser.add_argument("--rollouts-per-task", type=int, default=8, help="N")
    parser.add_argument("--step-latency", type=float, default=0.1, help="simulated seconds per env step")
    parser.add_argument("--reset-latency", type=float, default=0.5, help="simulated seconds per reset")
    parser.add_argument("--jitter", type=float, default=0.5, help="relative +- jitter of the latencies")
    parser.add_argument("--eval-every", type=int, default=10, help="evaluation every k epochs (and at the end)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "ablation_20ep")
    parser.add_argument("--analyze-only", action="store_true", help="skip training; analyse <out>/runs")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every job")
    return parser.parse_args(argv)


def train_command(args: argparse.Namespace, runs_dir: Path) -> list[str]:
    seeds = ",".join(str(s) for s in range(args.seeds))
    fixed = [
        f"trainer.max_epochs={args.epochs}",
        f"data.tasks_per_epoch={args.tasks_per_epoch}",
        f"data.rollouts_per_task={args.rollouts_per_task}",
        f"env.step_latency_s={args.step_latency}",
        f"env.reset_latency_s={args.reset_latency}",
        f"env.latency_jitter={args.jitter}",
        f"callbacks.evaluation.every_n_epochs={args.eval_every}",
        "logger=csv",
        "callbacks.rollout_progress.enabled=false",
        "trainer.enable_progress_bar=false",
        *args.overrides,
    ]
    # job folders are named by what the sweep varies (experiment, seed, thresholds), not the fixed settings
    exclude = ",".join(["sweep"] + [o.split("=", 1)[0].lstrip("+~") for o in fixed])
    return [
        sys.executable, "train.py", "-m", f"+sweep={args.preset}", f"seed={seeds}", *fixed,
        f"hydra.sweep.dir={runs_dir}", f"hydra.job.config.override_dirname.exclude_keys=[{exclude}]",
    ]


def machine() -> str:
    import torch

    return (
        f"{platform.platform()}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, torch {torch.__version__}, no GPU used"
    )


def time_parts_table(groups) -> tuple[str, dict[str, float]]:
    """Mean seconds per epoch of each part of the step, and the framework overhead share."""
    import numpy as np

    lines = ["| method | step s | " + " | ".join(p.split("/")[1] for p in TIME_PARTS) + " | overhead |", "|---" * (len(TIME_PARTS) + 3) + "|"]
    step_time: dict[str, float] = {}
    for group in groups:
        means = {}
        for key in ["time/step_s", *TIME_PARTS]:
            values = np.concatenate([r.run.series(key)[1] for r in group.runs]) if group.runs else np.array([])
            means[key] = float(values.mean()) if len(values) else math.nan
        step_time[group.label] = means["time/step_s"]
        share = means["time/other_s"] / means["time/step_s"] if means["time/step_s"] else math.nan
        cells = " | ".join(f"{means[p]:.2f}" for p in TIME_PARTS)
        lines.append(f"| {group.label} | {means['time/step_s']:.2f} | {cells} | {100 * share:.1f}% |")
    return "\n".join(lines), step_time


def initial_levels(runs) -> str:
    """The level every method starts from (the same warm-started checkpoint), before any update."""
    from steprl.analysis import mean_std
    from steprl.analysis.tables import format_value

    train = format_value(*mean_std([run.last("eval/initial_train_success_rate") for run in runs])[:2], "{:.3f}")
    heldout = format_value(*mean_std([run.last("eval/initial_success_rate") for run in runs])[:2], "{:.3f}")
    return f"Before training (all runs start from the same warm-started policy): training success {train}, held-out {heldout}."


def method_of(label: str) -> str:
    return label.split("=")[-1].strip()


def write_report(args: argparse.Namespace, runs_dir: Path, command: list[str]) -> Path:
    from steprl.analysis import compare, metrics_figure, save_figure

    out = args.out
    group_by = ["algo.name"] if args.preset != "thresholds" else ["algo.s0", "algo.s_low"]
    comparison = compare([runs_dir], out, group_by=group_by, markdown=True)
    comparison.files["tasks_above_s0"] = save_figure(metrics_figure(comparison.groups, ["tasks/above_s0"]), out / "tasks_above_s0.png")
    parts_table, step_time = time_parts_table(comparison.groups)
    by_method = {method_of(label): seconds for label, seconds in step_time.items()}

    lines = [
        f"# Results: {args.preset} on MiniDesk (tiny policy)",
        "",
        f"Measured {dt.date.today().isoformat()} on {machine()}.",
        "",
        "Command:",
        "",
        "```bash",
        " ".join(shlex.quote(c) for c in ["python", "scripts/reproduce.py", *sys.argv[1:]]),
        "```",
        "",
        "which ran (one Hydra multirun):",
        "",
        "```bash",
        " ".join(shlex.quote(c) for c in ["python", *command[1:]]),
        "```",
        "",
        f"Budget per method and seed: B={args.tasks_per_epoch} tasks x N={args.rollouts_per_task} rollouts per epoch, "
        f"{args.epochs} epochs; simulated env latency {args.step_latency} s per step and {args.reset_latency} s per reset "
        f"(±{int(100 * args.jitter)}% jitter). Training success = eval/train_success_rate (every training task, "
        "sampled as in training); held-out = eval/success_rate (greedy); both at the last epoch.",
        "",
        "## Table (mean ± sample std over seeds)",
        "",
        comparison.markdown(),
        "",
        initial_levels(comparison.runs),
        "",
    ]
    if "step" in by_method and "t_grpo" in by_method:
        ratio = by_method["step"] / by_method["t_grpo"]
        lines += [
            f"STEP's time per step is **{ratio:.2f}×** T-GRPO's ({by_method['step']:.2f} s vs {by_method['t_grpo']:.2f} s, "
            f"i.e. {100 * (1 - ratio):.0f}% less; the paper reports 74–86% less on OSWorld).",
            "",
        ]
    lines += [
        "## Time per step, split into its parts (mean seconds per epoch)",
        "",
        "`overhead` = time/other_s / time/step_s: the framework's own time (sample building, batching, logging, "
        "Lightning's loop), everything not spent in env interaction, generation, log-prob passes or the optimiser.",
        "",
        parts_table,
        "",
        "## Figures",
        "",
    ]
    lines += [f"- `{path.name}`" for name, path in sorted(comparison.files.items()) if path.suffix == ".png"]
    if comparison.failed:
        lines += ["", "## Failed runs", ""] + [f"- {run.path}" for run in comparison.failed]
    report = out / "README.md"
    report.write_text("\n".join(lines) + "\n")
    print(comparison.table)
    print(parts_table)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs_dir = (args.out / "runs").resolve()
    command = train_command(args, runs_dir)
    if not args.analyze_only:
        print("running:", " ".join(shlex.quote(c) for c in command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
    report = write_report(args, runs_dir, command)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
