"""Pictures written during training (matplotlib, headless): the success curve and the per-task map."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

#: Colour of heatmap cells for tasks not rolled out yet (explained in the legend).
UNSEEN_COLOUR = "#d9d9d9"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def task_success_heatmap(history: list[dict[str, float]], path: Path) -> Path | None:
    """ŝ_i of every task (rows, sorted by final ŝ) over epochs (columns); tasks not rolled out yet
    are grey, with a legend entry saying so."""
    tasks = sorted({task for rates in history for task in rates})
    if not tasks:
        return None
    plt = _pyplot()
    from matplotlib.patches import Patch

    grid = np.full((len(tasks), len(history)), np.nan)
    for col, rates in enumerate(history):
        for row, task in enumerate(tasks):
            grid[row, col] = rates.get(task, np.nan)
    final = np.nan_to_num(grid[:, -1], nan=-1.0)
    grid = grid[np.argsort(-final, kind="stable")]

    cmap = plt.get_cmap("viridis").with_extremes(bad=UNSEEN_COLOUR)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.18 * len(history) + 4.0), max(4.5, 0.12 * len(tasks) + 2.0)))
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0, vmax=1.0,
                      extent=(0.5, len(history) + 0.5, len(tasks) - 0.5, -0.5))
    ax.set_xlabel("epoch", fontsize=11)
    ax.set_ylabel(f"task ({len(tasks)}, best at the top)", fontsize=11)
    ax.set_title("Per-task success rate ŝ_i after each epoch", fontsize=12)
    ax.set_yticks([])
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.colorbar(image, ax=ax, label="ŝ_i (0 = never solved, 1 = always)")
    ax.legend(handles=[Patch(facecolor=UNSEEN_COLOUR, edgecolor="grey", label="not rolled out yet")],
              loc="upper left", bbox_to_anchor=(0.0, -0.08), frameon=False, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def success_curve(
    curve: list[dict[str, float]], evaluations: list[dict[str, Any]], path: Path, s0: float | None = None
) -> Path | None:
    """Three panels: success against epoch, success against env steps (rollout success per epoch,
    held-out and training-set evaluations as markers), and tasks with ŝ_i ≥ s0 against epoch.
    Undefined (NaN) values are left out of the lines."""
    if not curve and not evaluations:
        return None
    plt = _pyplot()
    fig, (by_epoch, by_steps, above) = plt.subplots(1, 3, figsize=(15, 4.6))
    epochs = [p["epoch"] for p in curve]
    steps = [p["env_steps_total"] for p in curve]
    success = [p["success_rate"] for p in curve]
    series = [("eval/success_rate", "held-out (greedy)", "tab:red", "o"), ("eval/train_success_rate", "all training tasks", "tab:green", "s")]
    for ax, xs, key, xlabel in ((by_epoch, epochs, "epoch", "epoch"), (by_steps, steps, "env_steps_total", "env steps")):
        if curve:
            ax.plot(xs, success, color="tab:blue", lw=1.8, marker="." if len(curve) < 40 else None, label="rollouts of the epoch")
        for name, label, colour, marker in series:
            points = [(e[key], e["values"][name]) for e in evaluations if not math.isnan(e["values"].get(name, math.nan))]
            if points:
                ax.plot(*zip(*points), color=colour, marker=marker, ms=6, lw=1.2, ls="--", label=label)
        ax.set_xlabel(xlabel, fontsize=11)
        ax.set_ylabel("success rate", fontsize=11)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    by_epoch.set_title("Success against epoch", fontsize=12)
    by_steps.set_title("Success against env steps", fontsize=12)
    by_epoch.legend(loc="best", fontsize=9)
    if curve:
        above.plot(epochs, [p["above_s0"] for p in curve], color="tab:purple", lw=1.8, marker="." if len(curve) < 40 else None)
        total = max((p.get("tasks", 0) for p in curve), default=0)
        if total:
            above.axhline(total, color="grey", lw=0.8, ls=":", label=f"all {int(total)} training tasks")
            above.legend(loc="best", fontsize=9)
            above.set_ylim(-0.5, total * 1.08 + 0.5)
    above.set_title(f"Tasks with ŝ_i ≥ s0{f' = {s0:g}' if s0 is not None else ''}", fontsize=12)
    above.set_xlabel("epoch", fontsize=11)
    above.set_ylabel("tasks", fontsize=11)
    above.grid(alpha=0.3)
    for ax in (by_epoch, above):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
