"""Pictures written during training (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def task_success_heatmap(history: list[dict[str, float]], path: Path) -> Path | None:
    """ŝ_i of every task (rows, sorted by final ŝ) over epochs (columns); unseen tasks are blank."""
    tasks = sorted({task for rates in history for task in rates})
    if not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((len(tasks), len(history)), np.nan)
    for col, rates in enumerate(history):
        for row, task in enumerate(tasks):
            grid[row, col] = rates.get(task, np.nan)
    final = np.nan_to_num(grid[:, -1], nan=-1.0)
    grid = grid[np.argsort(-final, kind="stable")]

    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(history) + 2.5), max(3.0, 0.04 * len(tasks) + 1.5)))
    image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"task (n={len(tasks)}, sorted by final ŝ)")
    ax.set_title("per-task success rate ŝ_i")
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, label="ŝ_i")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
