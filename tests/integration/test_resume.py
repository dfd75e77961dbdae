"""Resume: 2 epochs, then resume to 4 — the same record as an uninterrupted 4-epoch run."""

from __future__ import annotations

import csv

import torch

from steprl.train import build, run
from tests.probes import RecordAtFitStart
from tests.train_config import FAST, compose_train

BASE = ["+experiment=minidesk_step", *FAST, "~callbacks.evaluation"]


def datamodule_state(checkpoint_path):
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    return checkpoint["SuccessRateDataModule"]


def epochs_logged(run_dir):
    return sorted({int(row["epoch"]) for row in csv.DictReader((run_dir / "metrics.csv").open()) if row.get("time/step_s")})


def test_resume_at_an_epoch_boundary_matches_an_uninterrupted_run(tmp_path):
    first, resumed, straight = tmp_path / "first", tmp_path / "resumed", tmp_path / "straight"
    run(compose_train([*BASE, "trainer.max_epochs=2"], first))
    checkpoint = first / "checkpoints" / "last.ckpt"
    saved = datamodule_state(checkpoint)

    parts = build(compose_train([*BASE, "trainer.max_epochs=4", f"ckpt_path={checkpoint}"], resumed))
    probe = RecordAtFitStart()
    parts.trainer.callbacks.append(probe)
    try:
        parts.trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=str(checkpoint))
    finally:
        parts.close()
    assert probe.rates == saved["recorder"]["rates"]  # the record was restored before epoch 3
    assert epochs_logged(resumed) == [2, 3]  # epochs 3-4 ran, nothing was repeated or skipped

    run(compose_train([*BASE, "trainer.max_epochs=4"], straight))
    final_resumed = datamodule_state(resumed / "checkpoints" / "last.ckpt")
    final_straight = datamodule_state(straight / "checkpoints" / "last.ckpt")
    assert final_resumed["recorder"] == final_straight["recorder"]
    assert final_resumed["env_steps_total"] == final_straight["env_steps_total"]


def test_resume_with_the_default_logger_continues_the_wandb_run(tmp_path, monkeypatch):
    """The README's recipe with the default logger (W&B, offline): the checkpoint holds the W&B run
    id, and resuming from it continues that run (it used to fail on `logger.wandb.resume`)."""
    from steprl.lightning.checkpoint import load_checkpoint

    monkeypatch.setenv("WANDB_MODE", "offline")  # the suite disables W&B; this test needs the real default logger
    default_logger = [*BASE, "logger=wandb"]  # debug=fast picks csv; this is train.yaml's default logger
    assert list(compose_train(default_logger).logger) == list(compose_train([]).logger) == ["csv", "wandb"]
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    run(compose_train([*default_logger, "trainer.max_epochs=1"], first))
    checkpoint = first / "checkpoints" / "last.ckpt"
    run_id = load_checkpoint(checkpoint)["steprl_wandb_run_id"]
    assert run_id and sorted(p.name for p in (first / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    assert (first / "plots" / "success_curve.png").is_file() and (first / "plots" / "task_success.png").is_file()

    cfg = compose_train([*default_logger, "trainer.max_epochs=2", f"ckpt_path={checkpoint}"], resumed)
    run(cfg)
    assert cfg.logger.wandb.id == run_id and cfg.logger.wandb.resume == "allow"
    assert epochs_logged(resumed) == [1]
    assert load_checkpoint(resumed / "checkpoints" / "last.ckpt")["steprl_wandb_run_id"] == run_id
    assert list((resumed / "wandb").glob(f"offline-run-*-{run_id}"))  # the resumed run wrote to the same W&B run
