"""Compare finished runs: a table (per group of seeds) and PNG plots.

    python scripts/compare_runs.py outputs/train/multiruns/thresholds_2025-06-01_12-00-00
    python scripts/compare_runs.py RUN_DIR RUN_DIR SWEEP_DIR --out results/cmp --markdown
    python scripts/compare_runs.py SWEEP_DIR --group-by algo.name      # one row per algorithm
    python scripts/compare_runs.py SWEEP_DIR --group-by none           # one row per run

A sweep directory expands to its job directories. By default runs whose configs differ only in the
seed are one group (mean ± sample std over seeds). Writes into --out (default: <the one sweep
directory given>/comparison, else outputs/comparison): summary.csv, summary.md (--markdown),
success_vs_epoch.png, success_vs_env_steps.png, time_per_step.png and, when the runs vary algo.s0 or
algo.s_low, threshold_heatmap.png. The same code backs notebooks/analysis.ipynb (steprl.analysis).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steprl.analysis import RunDirError, compare, expand_run_dirs


def default_out(paths: list[str]) -> Path:
    """<sweep dir>/comparison for a single sweep directory, else outputs/comparison."""
    if len(paths) == 1 and len(expand_run_dirs(paths)) > 1:
        return Path(paths[0]) / "comparison"
    return Path("outputs") / "comparison"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_SWEEP_DIR", help="run directories and/or sweep (multirun) directories")
    parser.add_argument("--out", type=Path, default=None, help="output directory for the table files and PNG plots")
    parser.add_argument(
        "--group-by",
        default=None,
        metavar="KEY[,KEY...]",
        help="config keys to group by (e.g. algo.name or algo.s0,algo.s_low); 'none': one row per run; "
        "default: runs equal up to the seed form a group",
    )
    parser.add_argument("--markdown", action="store_true", help="also write the table as Markdown (summary.md)")
    parser.add_argument("--no-plots", action="store_true", help="write the table only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    group_by = [key.strip() for key in args.group_by.split(",") if key.strip()] if args.group_by else None
    try:
        out = args.out or default_out(args.paths)
        result = compare(args.paths, out, group_by=group_by, markdown=args.markdown, plots=not args.no_plots)
    except (RunDirError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"compare_runs: {message}", file=sys.stderr)
        return 2
    print(result.table)
    print()
    for name, path in result.files.items():
        print(f"wrote {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
