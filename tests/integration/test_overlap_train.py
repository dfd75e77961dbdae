"""Overlapped training through Lightning (data.overlap=true): the lag and overlap metrics are logged,
and a run resumed from a checkpoint taken while a background collection was in flight ends with
the same record as an uninterrupted overlapped run."""

from __future__ import annotations

import csv

import pytest
import torch

from steprl.train import run
from tests.train_config import FAST, compose_train

BASE = ["+experiment=minidesk_step", *FAST, "~callbacks.evaluation", "data.overlap=true"]


def datamodule_state(checkpoint_path):
    return torch.load(checkpoint_path, map_location="cpu", weights_only=False)["SuccessRateDataModule"]


def logged(run_dir, key):
    return [float(row[key]) for row in csv.DictReader((run_dir / "metrics.csv").open()) if row.get(key)]


@pytest.mark.slow  # two short trainings (~2 min on a loaded 2-core machine)
def test_overlapped_resume_matches_an_uninterrupted_overlapped_run(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(compose_train([*BASE, "trainer.max_epochs=3", "callbacks.model_checkpoint.save_top_k=-1"], straight))
    checkpoint = straight / "checkpoints" / "epoch_000.ckpt"
    saved = datamodule_state(checkpoint)
    assert saved["overlap_snapshot"]["version"] == 0  # collect(1) was in flight when epoch 0 was saved

    run(compose_train([*BASE, "trainer.max_epochs=3", f"ckpt_path={checkpoint}"], resumed))
    assert logged(straight, "time/policy_lag") == [0.0, 1.0, 1.0]
    assert logged(resumed, "time/policy_lag") == [1.0, 1.0]  # epoch 1 redone with the checkpointed snapshot
    assert len(logged(straight, "time/wait_data_s")) == len(logged(straight, "time/env_idle_s")) == 3
    final_resumed = datamodule_state(resumed / "checkpoints" / "last.ckpt")
    final_straight = datamodule_state(straight / "checkpoints" / "last.ckpt")
    assert "overlap_snapshot" not in final_straight  # nothing is collected after the last epoch
    assert final_resumed["recorder"] == final_straight["recorder"]
    assert final_resumed["env_steps_total"] == final_straight["env_steps_total"]
