"""A short `python train.py +experiment=miniwob_step` run on real MiniWoB++ pages (Chromium)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from tests.train_config import ROOT
from tests.unit.test_env_miniwob_browser import _missing

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def test_miniwob_step_trains_and_logs_success_rates(tmp_path):
    command = [
        sys.executable, "train.py", "+experiment=miniwob_step", "trainer.max_epochs=2", "data.tasks_per_epoch=2",
        "env.tasks=[click-test,click-button]", "env.seeds_per_task=2", "env.test_seeds_per_task=1",
        "callbacks.evaluation.initial=false", "callbacks.evaluation.train_split=false", "callbacks.evaluation.max_tasks=2",
        "logger=csv", "callbacks.rollout_progress.enabled=false", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
    ]
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [row for row in csv.DictReader((tmp_path / "metrics.csv").open()) if row.get("rollout/success_rate")]
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= float(row["rollout/success_rate"]) <= 1.0
        assert float(row["rollout/trajectories"]) == 8  # 2 tasks x 4 rollouts
    assert any(row.get("eval/success_rate") for row in csv.DictReader((tmp_path / "metrics.csv").open()))
