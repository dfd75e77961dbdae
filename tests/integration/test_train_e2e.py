"""End to end: two epochs of STEP, T-GRPO and GiGPO on MiniDesk with the tiny policy."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steprl.train import run
from tests.train_config import FAST, ROOT, compose_train

#: The metric glossary (README): every key must be in metrics.csv after a run.
GLOSSARY = [
    "rollout/success_rate", "rollout/trajectories", "rollout/env_steps", "rollout/env_steps_total",
    "rollout/mean_length", "rollout/invalid_action_rate", "rollout/env_errors",
    "tasks/sr_mean", "tasks/above_s0", "tasks/cache_size", "tasks/replaced_copies",
    "tasks/solve_all", "tasks/solve_none", "tasks/solve_partial",
    "train/loss", "train/pg_loss", "train/kl", "train/clipfrac", "train/approx_kl", "train/entropy",
    "train/grad_norm", "train/samples", "train/aug_samples", "train/adv_mean",
    "time/step_s", "time/rollout_s", "time/env_s", "time/generate_s", "time/old_logprob_s",
    "time/update_s", "time/augment_s", "time/other_s", "eval/success_rate", "eval/train_success_rate",
    "eval/initial_success_rate", "eval/initial_train_success_rate",
    "rollout/valid", "rollout/env_restarts", "rollout/env_retries", "rollout/env_timeouts", "rollout/env_quarantined",
    "eval/env_errors", "eval/train_env_errors", "train/optimizer_steps",
    "train/failed_credit_samples", "train/aug_outcome_groups", "rollout/aug_env_steps",
]
TIME_PARTS = ["time/rollout_s", "time/augment_s", "time/old_logprob_s", "time/update_s", "time/other_s"]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def initial_weights() -> dict[str, torch.Tensor]:
    return load_file(ROOT / "assets" / "policies" / "tiny-minidesk" / "model.safetensors")


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("policy.model."): v for k, v in state.items()}


@pytest.mark.parametrize("experiment", ["minidesk_step", "minidesk_tgrpo", "minidesk_gigpo"])
def test_two_epochs_train_log_and_time(experiment, tmp_path):
    cfg = compose_train([f"+experiment={experiment}", "trainer.max_epochs=2", *FAST], tmp_path)
    run(cfg)

    rows = read_metrics(tmp_path)
    logged = {key for row in rows for key, value in row.items() if value != ""}
    assert set(GLOSSARY) <= logged, sorted(set(GLOSSARY) - logged)

    epochs = [row for row in rows if row.get("time/step_s")]
    assert len(epochs) == 2
    for row in epochs:
        parts = sum(float(row[key]) for key in TIME_PARTS)
        assert math.isclose(float(row["time/step_s"]), parts, rel_tol=1e-6, abs_tol=1e-4)
        assert float(row["time/rollout_s"]) == pytest.approx(float(row["time/env_s"]) + float(row["time/generate_s"]), abs=1e-4)
        assert float(row["time/other_s"]) >= 0.0

    before, after = initial_weights(), final_weights(tmp_path)
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert changed, "no parameter changed in two epochs"


def test_truncated_importance_sampling_correction_trains(tmp_path):
    """algo.is_correction=tis: the batch carries the sampler's log-probs and the update runs."""
    cfg = compose_train(["+experiment=minidesk_step", "trainer.max_epochs=1", "algo.is_correction=tis", *FAST], tmp_path)
    run(cfg)
    rows = [row for row in read_metrics(tmp_path) if row.get("train/loss")]
    assert rows and math.isfinite(float(rows[-1]["train/loss"]))
