"""A broken environment must not look like a bad policy: undefined success rates are NaN, the
collector's health is logged, and a run whose env always fails stops with a message, non-zero."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

from steprl.train import run
from tests.train_config import FAST, ROOT, compose_train

ALWAYS_FAILS = ["+experiment=minidesk_step", *FAST, "env.fault_step_raise_prob=1.0", "trainer.max_epochs=2"]


def test_a_run_whose_env_always_raises_exits_non_zero_with_the_message(tmp_path):
    overrides = [*ALWAYS_FAILS, "~callbacks.evaluation", f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "train.py", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "RunFailedError: Epoch 0: none of the 8 trajectories was valid" in output
    assert "restarts" in output and "Traceback" not in output  # one clear message, not a stack trace
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # the broken epoch was not checkpointed


def test_undefined_success_rates_are_nan_and_env_health_is_logged(tmp_path):
    overrides = [*ALWAYS_FAILS, "trainer.max_epochs=1", "~callbacks.run_health", "callbacks.evaluation.initial=false",
                 "callbacks.evaluation.train_repeats=1", "callbacks.evaluation.max_tasks=2"]
    run(compose_train(overrides, tmp_path))
    (row,) = [r for r in csv.DictReader((tmp_path / "metrics.csv").open()) if r.get("rollout/success_rate")]
    assert math.isnan(float(row["rollout/success_rate"])) and math.isnan(float(row["rollout/mean_length"]))
    assert math.isnan(float(row["eval/success_rate"])) and math.isnan(float(row["eval/train_success_rate"]))
    assert float(row["rollout/env_errors"]) == 8 and float(row["rollout/valid"]) == 0
    assert float(row["eval/env_errors"]) == 2 and float(row["eval/train_env_errors"]) == 2
    # 8 trajectories x 3 attempts, each failing at its first step: 24 restarts, 16 retries
    assert float(row["rollout/env_restarts"]) == 24 and float(row["rollout/env_retries"]) == 16
    assert float(row["rollout/env_timeouts"]) == 0 and float(row["rollout/env_quarantined"]) == 0
