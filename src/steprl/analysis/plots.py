"""Comparison figures: success vs RL iterations / env steps, time per step, s0 × s_low heatmap.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global figure state, no
backend switch): a notebook shows it inline, `save_figure` writes it as PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from steprl.analysis.curves import ROLLOUT_KEY, curve, heldout_curve, training_curve
from steprl.analysis.summary import GroupSummary, RunSummary, mean_std

#: The measured parts of time/step_s, stacked in this order (time/rollout_s = env + generate, so
#: it is not stacked itself).
TIME_PARTS = ("time/env_s", "time/generate_s", "time/augment_s", "time/old_logprob_s", "time/update_s", "time/other_s")
S0_KEY, S_LOW_KEY = "algo.s0", "algo.s_low"
X_AXES = {"iterations": "RL iterations (epochs) done", "env_steps": "training env steps"}


def _colors(n: int) -> list[tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as PNG (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


# ------------------------------------------------------------------------------------------ success
def success_figure(groups: Sequence[GroupSummary], x: str = "iterations") -> Figure:
    """Training success (left) and held-out success (right) of every run against `x`
    ("iterations" or "env_steps"); one line per run, one colour per group (its seeds). Where the
    training success is eval/train_success_rate, the epoch's rollout/success_rate is drawn dashed."""
    if x not in X_AXES:
        raise ValueError(f"x={x!r}: choose one of {sorted(X_AXES)}")
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    ax_train, ax_held = figure.subplots(1, 2, sharey=True)
    train_keys: set[str] = set()
    any_heldout = False
    for color, group in zip(_colors(len(groups)), groups):
        for i, summary in enumerate(group.runs):
            label = f"{_short(group.label)} (n={group.size})" if i == 0 else None
            train = training_curve(summary.run)
            train_keys.add(train.key)
            ax_train.plot(getattr(train, x), train.values, color=color, marker="o", markersize=3, alpha=0.8, label=label)
            if train.key != ROLLOUT_KEY:  # the per-epoch rollout success, faint, between the evaluations
                rollout = curve(summary.run, ROLLOUT_KEY)
                ax_train.plot(getattr(rollout, x), rollout.values, color=color, linestyle="--", linewidth=0.8, alpha=0.5)
                train_keys.add(ROLLOUT_KEY + " (dashed)")
            held = heldout_curve(summary.run)
            if len(held.values):
                any_heldout = True
                ax_held.plot(getattr(held, x), held.values, color=color, marker="o", markersize=3, alpha=0.8)
    ax_train.set_title("training success: " + ", ".join(sorted(train_keys)), fontsize=10)
    ax_held.set_title("held-out success (eval/success_rate)", fontsize=10)
    if not any_heldout:
        ax_held.text(0.5, 0.5, "no run logged eval/success_rate", ha="center", va="center", transform=ax_held.transAxes)
    for ax in (ax_train, ax_held):
        ax.set_xlabel(X_AXES[x])
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("success rate")
    if groups:
        ax_train.legend(fontsize=7, loc="best")
    return figure


def metrics_figure(groups: Sequence[GroupSummary], keys: Sequence[str], columns: int = 3) -> Figure:
    """Any logged metric keys against the epoch (one panel per key, one line per run, one colour per
    group), for looking around a sweep (train/loss, tasks/above_s0, rollout/mean_length, ...)."""
    rows = max(1, math.ceil(len(keys) / columns))
    figure = Figure(figsize=(4.2 * min(columns, max(1, len(keys))), 3.0 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, min(columns, max(1, len(keys))), squeeze=False)).ravel()
    for ax, key in zip(axes, keys):
        for color, group in zip(_colors(len(groups)), groups):
            for i, summary in enumerate(group.runs):
                epochs, values = summary.run.series(key)
                ax.plot(epochs, values, color=color, alpha=0.8, label=_short(group.label, 32) if i == 0 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if keys and groups:
        axes[0].legend(fontsize=6)
    return figure


# ------------------------------------------------------------------------------------------ time
def mean_step_parts(summary: RunSummary) -> dict[str, float]:
    """Mean over epochs of each part of time/step_s (0 for a part the run never logged)."""
    parts = {}
    for key in TIME_PARTS:
        _, values = summary.run.series(key)
        parts[key] = float(values.mean()) if len(values) else 0.0
    return parts


def step_time_figure(groups: Sequence[GroupSummary]) -> Figure:
    """Mean time per RL iteration of every run as a horizontal bar split into its parts."""
    summaries = [summary for group in groups for summary in group.runs]
    figure = Figure(figsize=(10, 1.2 + 0.35 * max(1, len(summaries))), layout="constrained")
    ax = figure.subplots()
    left = np.zeros(len(summaries))
    positions = np.arange(len(summaries))
    for color, key in zip(_colors(len(TIME_PARTS)), TIME_PARTS):
        widths = np.array([mean_step_parts(s)[key] for s in summaries])
        ax.barh(positions, widths, left=left, color=color, label=key.removeprefix("time/").removesuffix("_s"))
        left += widths
    ax.set_yticks(positions, [_short(s.label, 60) for s in summaries], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mean seconds per RL iteration (time/step_s split into its parts)")
    ax.legend(fontsize=7, ncols=len(TIME_PARTS), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return figure


# ------------------------------------------------------------------------------------------ s0 × s_low
@dataclass
class ThresholdGrid:
    """Mean, std and count of a summary number per (s_low, s0) cell: rows s_low, columns s0."""

    s0: list[float]
    s_low: list[float]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray


def threshold_grid(groups: Sequence[GroupSummary], value: str = "final_success") -> ThresholdGrid | None:
    """The runs' `value` on the s0 × s_low grid (mean over the runs of a cell, e.g. its seeds), or
    None when the runs do not vary s0 or s_low (or do not all have both keys)."""
    summaries = [summary for group in groups for summary in group.runs]
    points = []
    for summary in summaries:
        config = summary.run.config
        if S0_KEY not in config or S_LOW_KEY not in config:
            return None
        points.append((float(config[S0_KEY]), float(config[S_LOW_KEY]), getattr(summary, value)))
    s0 = sorted({p[0] for p in points})
    s_low = sorted({p[1] for p in points})
    if len(s0) < 2 and len(s_low) < 2:
        return None
    mean, std, count = (np.full((len(s_low), len(s0)), np.nan) for _ in range(3))
    for row, low in enumerate(s_low):
        for col, mid in enumerate(s0):
            mean[row, col], std[row, col], count[row, col] = mean_std([v for a, b, v in points if a == mid and b == low])
    return ThresholdGrid(s0, s_low, mean, std, count)


def threshold_heatmap(groups: Sequence[GroupSummary]) -> Figure | None:
    """Final training success (and held-out success, where logged) on the s0 × s_low grid; None
    when the runs do not vary the thresholds."""
    keys = " / ".join(sorted({group.success_key for group in groups}))
    panels = [("final_success", f"final training success ({keys})")]
    held = threshold_grid(groups, "heldout_success")
    if held is not None and not np.all(np.isnan(held.mean)):
        panels.append(("heldout_success", "final held-out success (eval/success_rate)"))
    grids = [(threshold_grid(groups, value), title) for value, title in panels]
    if grids[0][0] is None:
        return None
    figure = Figure(figsize=(5.5 * len(grids), 4.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(grids)))
    for ax, (grid, title) in zip(axes, grids):
        image = ax.imshow(grid.mean, origin="lower", cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        for row in range(len(grid.s_low)):
            for col in range(len(grid.s0)):
                m, s, n = grid.mean[row, col], grid.std[row, col], int(grid.count[row, col])
                text = "-" if math.isnan(m) else f"{m:.2f}" + ("" if math.isnan(s) else f"\n±{s:.2f}") + f"\nn={n}"
                ax.text(col, row, text, ha="center", va="center", fontsize=8, color="white" if (math.isnan(m) or m < 0.6) else "black")
        ax.set_xticks(range(len(grid.s0)), [f"{v:g}" for v in grid.s0])
        ax.set_yticks(range(len(grid.s_low)), [f"{v:g}" for v in grid.s_low])
        ax.set_xlabel("s0 (algo.s0)")
        ax.set_ylabel("s_low (algo.s_low)")
        ax.set_title(title, fontsize=10)
        figure.colorbar(image, ax=ax, label="success rate")
    return figure
