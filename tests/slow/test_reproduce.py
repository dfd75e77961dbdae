"""The reproduction script end to end at a reduced size: runs, table, ratio, overhead, figures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.train_config import ROOT

pytestmark = pytest.mark.slow


def test_reproduction_at_reduced_size(tmp_path):
    out = tmp_path / "results"
    command = [
        sys.executable, "scripts/reproduce.py", "--preset", "first_experiment", "--seeds", "1", "--epochs", "2",
        "--tasks-per-epoch", "2", "--rollouts-per-task", "4", "--step-latency", "0.01", "--reset-latency", "0.01",
        "--eval-every", "2", "--out", str(out),
        "rollout=inprocess", "rollout.pool.num_workers=4", "callbacks.evaluation.max_tasks=4", "data.batch_size=16",
    ]
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    report = (out / "README.md").read_text()
    for method in ("t_grpo", "gigpo", "step_no_both"):
        assert method in report
    assert "| method | step s |" in report and "overhead" in report
    assert "python scripts/reproduce.py" in report  # the exact command is recorded
    for figure in ("success_vs_epoch.png", "success_vs_env_steps.png", "time_per_step.png", "tasks_above_s0.png"):
        assert (out / figure).stat().st_size > 0
    assert len([d for d in (out / "runs").iterdir() if (d / "metrics.csv").is_file()]) == 3
