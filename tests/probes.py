"""Callbacks the tests add to runs to look inside them (importable by spawned DDP processes)."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback


class RankProbe(Callback):
    """Writes, per rank and epoch, what this rank rolled out and the success record it holds."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        report = trainer.datamodule.last_round
        record = {
            "rank": trainer.global_rank,
            "epoch": trainer.current_epoch,
            "trajectories": report.trajectories,
            "task_counts": report.task_counts,
            "rates": trainer.datamodule.recorder.rates,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (self.out_dir / f"rank{trainer.global_rank}.jsonl").open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


class RecordAtFitStart(Callback):
    """Keeps a copy of the success record as it is when fitting starts (after a checkpoint restore)."""

    def __init__(self) -> None:
        self.rates: dict[str, float] | None = None
        self.scheduler_state: dict | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.rates = trainer.datamodule.recorder.rates
        self.scheduler_state = trainer.datamodule.scheduler.state_dict()
