"""A whole comparison: load runs, summarise and group them, write the table and the figures.

`compare` is what `scripts/compare_runs.py` runs; the notebook calls the same pieces one by one.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steprl.analysis.plots import save_figure, step_time_figure, success_figure, threshold_heatmap
from steprl.analysis.runs import Run, load_runs
from steprl.analysis.summary import GroupSummary, failed_runs, summarize
from steprl.analysis.tables import csv_rows, markdown_table, text_table

#: PNG files a comparison writes (the heatmap only when the runs vary s0 or s_low).
FIGURES = {
    "success_vs_epoch": "success_vs_epoch.png",
    "success_vs_env_steps": "success_vs_env_steps.png",
    "time_per_step": "time_per_step.png",
    "threshold_heatmap": "threshold_heatmap.png",
}


@dataclass
class Comparison:
    """The loaded runs, their groups, the rendered table and the files written."""

    runs: list[Run]
    groups: list[GroupSummary]
    failed: list[Run]
    table: str
    files: dict[str, Path] = field(default_factory=dict)

    def markdown(self) -> str:
        return markdown_table(self.groups)


def render_table(groups: Sequence[GroupSummary], failed: Sequence[Run] = ()) -> str:
    """The plain-text table, with a note on where the training success comes from and the list of
    failed runs (the last line of their error)."""
    lines = [text_table(groups)]
    lines.append(
        "train SR from: eval/train_success_rate (every training task, sampled) where the run logged it, "
        "else rollout/success_rate (the epoch's rollouts). Groups: mean ± sample std over their runs (seeds)."
    )
    for run in failed:
        reason = (run.error or "no metrics.csv rows").strip().splitlines()[-1]
        lines.append(f"FAILED {run.path}: {reason}")
    return "\n".join(lines)


def write_figures(groups: Sequence[GroupSummary], out_dir: Path) -> dict[str, Path]:
    """The comparison figures as PNG files in `out_dir` (see FIGURES)."""
    files = {
        "success_vs_epoch": save_figure(success_figure(groups, x="iterations"), out_dir / FIGURES["success_vs_epoch"]),
        "success_vs_env_steps": save_figure(success_figure(groups, x="env_steps"), out_dir / FIGURES["success_vs_env_steps"]),
        "time_per_step": save_figure(step_time_figure(groups), out_dir / FIGURES["time_per_step"]),
    }
    heatmap = threshold_heatmap(groups)
    if heatmap is not None:
        files["threshold_heatmap"] = save_figure(heatmap, out_dir / FIGURES["threshold_heatmap"])
    return files


def write_csv(groups: Sequence[GroupSummary], path: Path) -> Path:
    rows = csv_rows(groups)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def compare(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    group_by: Sequence[str] | None = None,
    markdown: bool = False,
    plots: bool = True,
) -> Comparison:
    """Load the runs under `paths` (run or sweep directories), group and summarise them, and write
    summary.csv (+ summary.md with `markdown`) and the figures into `out_dir`."""
    runs = load_runs(paths)
    groups = summarize(runs, by=group_by)
    failed = failed_runs(runs)
    if not groups:
        raise ValueError(
            f"None of the {len(runs)} run(s) under {', '.join(map(str, paths))} logged any metric "
            "(see their error.txt / train.log)."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(runs, groups, failed, render_table(groups, failed))
    comparison.files["summary_csv"] = write_csv(groups, out_dir / "summary.csv")
    if markdown:
        path = out_dir / "summary.md"
        path.write_text(comparison.markdown() + "\n")
        comparison.files["summary_md"] = path
    if plots:
        comparison.files.update(write_figures(groups, out_dir))
    return comparison
