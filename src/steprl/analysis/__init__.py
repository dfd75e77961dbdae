"""Analysis of finished runs: read run / sweep directories, summarise and group seeds, plot.

Used by `scripts/compare_runs.py` and `notebooks/analysis.ipynb` (the same code, no copies).
Imports neither torch nor the training code.
"""

from steprl.analysis.curves import Curve, heldout_curve, training_curve, training_success_key
from steprl.analysis.plots import (
    ThresholdGrid,
    metrics_figure,
    save_figure,
    step_time_figure,
    success_figure,
    threshold_grid,
    threshold_heatmap,
)
from steprl.analysis.report import Comparison, compare, render_table, write_figures
from steprl.analysis.runs import Run, RunDirError, expand_run_dirs, latest_sweep_dir, load_run, load_runs
from steprl.analysis.summary import GroupSummary, RunSummary, failed_runs, group_runs, mean_std, summarize, summarize_run
from steprl.analysis.tables import format_markdown, format_text, markdown_table, table_rows, text_table
from steprl.analysis.wandb_group import multirun_group, wandb_group

__all__ = [
    "Comparison",
    "Curve",
    "GroupSummary",
    "Run",
    "RunDirError",
    "RunSummary",
    "ThresholdGrid",
    "compare",
    "expand_run_dirs",
    "failed_runs",
    "format_markdown",
    "format_text",
    "group_runs",
    "heldout_curve",
    "latest_sweep_dir",
    "load_run",
    "load_runs",
    "markdown_table",
    "mean_std",
    "metrics_figure",
    "multirun_group",
    "render_table",
    "save_figure",
    "step_time_figure",
    "success_figure",
    "summarize",
    "summarize_run",
    "table_rows",
    "text_table",
    "threshold_grid",
    "threshold_heatmap",
    "training_curve",
    "training_success_key",
    "wandb_group",
    "write_figures",
]
