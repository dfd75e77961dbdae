"""Profile RL iterations: where one epoch's time goes, and the framework's own share of it.

    python scripts/profile_step.py                                   # STEP and T-GRPO, 4 epochs each
    python scripts/profile_step.py --experiments minidesk_gigpo --epochs 6 --top 30
    python scripts/profile_step.py -- env.step_latency_s=0.1 env.reset_latency_s=0.5

For each experiment it trains the tiny policy on MiniDesk for a few epochs under cProfile (the
initial and held-out evaluations off, so only RL iterations are measured) and prints, per epoch
after the first (which includes starting the env workers), the time per step split into its parts
and the framework overhead: time/other_s / time/step_s, the time not spent in env interaction,
generation, log-prob passes or the optimiser. Then the functions with the most own time, so the
framework's hot spots can be found. Extra train.py overrides go after `--`.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import pstats
import sys
import tempfile
from pathlib import Path

from steprl.analysis.plots import TIME_PARTS as PARTS

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str], output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from steprl.hydra_resolvers import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.root_dir = str(ROOT)
    return cfg


def profile(experiment: str, epochs: int, extra: list[str], top: int) -> float:
    from steprl.train import build

    with tempfile.TemporaryDirectory() as out:
        overrides = [
            f"+experiment={experiment}", f"trainer.max_epochs={epochs}", "logger=csv", "~callbacks.evaluation",
            "callbacks.rollout_progress.enabled=false", "trainer.enable_progress_bar=false", *extra,
        ]
        parts = build(compose(overrides, Path(out)))
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            parts.trainer.fit(parts.module, datamodule=parts.datamodule)
            profiler.disable()
        finally:
            parts.close()
        rows = [row for row in csv.DictReader((Path(out) / "metrics.csv").open()) if row.get("time/step_s")]

    print(f"\n== {experiment}: seconds per epoch ({epochs} epochs; the first includes starting the env workers)")
    print("epoch  step_s  " + "  ".join(p.split("/")[1].removesuffix("_s").rjust(11) for p in PARTS) + "  overhead")
    shares = []
    for row in rows:
        step = float(row["time/step_s"])
        share = float(row["time/other_s"]) / step
        if int(row["epoch"]) > 0:
            shares.append(share)
        cells = "  ".join(f"{float(row[p]):11.3f}" for p in PARTS)
        print(f"{row['epoch']:>5}  {step:6.2f}  {cells}  {100 * share:7.1f}%")
    mean_share = sum(shares) / len(shares) if shares else float("nan")
    print(f"framework overhead (mean over epochs 1+): {100 * mean_share:.1f}% of the step")

    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
    print("\n".join(stream.getvalue().splitlines()[:top + 12]))
    return mean_share


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", default=["minidesk_step", "minidesk_tgrpo"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--top", type=int, default=20, help="functions listed by own time")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    args = parser.parse_args(argv)
    shares = {experiment: profile(experiment, args.epochs, args.overrides, args.top) for experiment in args.experiments}
    print("\nframework overhead: " + ", ".join(f"{name} {100 * share:.1f}%" for name, share in shares.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
