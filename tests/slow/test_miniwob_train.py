"""A short `python train.py +experiment=miniwob_step` run on real MiniWoB++ pages (Chromium).

The warm-started tiny policy (assets/policies/tiny-miniwob) trains with STEP on one easy task type
it solves only some of the time; its sampled success on the training instances must rise, and no
Chromium process of the run may outlive it. Marked slow (about 2-3 minutes on 2 cores); skipped,
with the reason, where miniwob/selenium or Chromium/ChromeDriver are missing.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.train_config import ROOT
from tests.unit.test_env_miniwob_browser import _missing

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]

#: An easy task type (difficulty 1) the warm start solves part of the time (docs/miniwob.md).
TASK_TYPE = "click-button"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text` (e.g. a browser profile path)."""
    out = subprocess.run(["pgrep", "-a", "-f", text], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_miniwob_step_with_warm_start_improves_an_easy_task_and_leaks_no_browser(tmp_path):
    run_dir = tmp_path / "run"
    # A short path: Chromium puts a UNIX socket under TMPDIR, and socket paths are limited to 107 bytes.
    browser_tmp = Path(tempfile.mkdtemp(prefix="swb-", dir="/tmp"))
    command = [
        sys.executable, "train.py", "+experiment=miniwob_step", "seed=0", f"env.tasks=[{TASK_TYPE}]",
        "env.seeds_per_task=6", "env.max_steps=2", "data.tasks_per_epoch=6", "data.rollouts_per_task=4", "trainer.max_epochs=4",
        "rollout.pool.num_workers=3", "callbacks.evaluation.every_n_epochs=4", "callbacks.evaluation.train_repeats=4",
        "optimizer.lr=5e-4", "logger=csv", "callbacks.rollout_progress.enabled=false", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    # Every browser profile of the run lives under browser_tmp, so its processes can be found by path.
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TMPDIR=str(browser_tmp))
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
        assert processes_mentioning(str(browser_tmp)) == [], "a Chromium process outlived the run"
        assert not list(browser_tmp.glob("steprl-miniwob-*")), "a browser profile directory was left behind"
    finally:
        shutil.rmtree(browser_tmp, ignore_errors=True)

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    values = {k: float(v) for row in rows for k, v in row.items() if v and k.startswith("eval/")}
    rollouts = [float(row["rollout/success_rate"]) for row in rows if row.get("rollout/success_rate")]
    assert len(rollouts) == 4
    before, after = values["eval/initial_train_success_rate"], values["eval/train_success_rate"]
    assert 0.0 < before < 0.9, f"the warm start should solve {TASK_TYPE} part of the time, got {before}"
    assert after >= before + 0.15, f"sampled success on the training instances went {before:.3f} -> {after:.3f}"
