"""Callbacks: success curves, time per step, held-out evaluation, rollout progress, W&B run id.

They read what the datamodule recorded for the round (`datamodule.last_round`, a RoundReport) and
log it under the metric names of the README's glossary. Metrics are logged once per epoch
(= one RL iteration).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchmetrics import SumMetric

from steprl.round import RoundReport


def _log(pl_module: LightningModule, values: dict[str, float]) -> None:
    for name, value in values.items():
        pl_module.log(name, float(value), on_step=False, on_epoch=True, batch_size=1)


class SuccessCurves(Callback):
    """Logs rollout/* and tasks/* metrics, the per-task success table and a per-task picture.

    Success counts are summed across ranks with torchmetrics (SumMetric syncs under DDP), so
    `rollout/success_rate` is the success rate over every valid trajectory of the round.
    `plot_every_n_epochs` writes `plots/task_success.png` (ŝ_i per task over epochs) in the run
    directory and logs it to W&B / TensorBoard when those loggers are on.
    """

    def __init__(self, plot_every_n_epochs: int = 5, wandb_table: bool = True) -> None:
        self.plot_every_n_epochs = plot_every_n_epochs
        self.wandb_table = wandb_table
        self.history: list[dict[str, float]] = []  # ŝ per task after each epoch (for the picture)
        self._sums = {name: SumMetric() for name in ("trajectories", "valid", "successes", "env_errors", "env_steps", "invalid")}

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        report: RoundReport | None = getattr(trainer.datamodule, "last_round", None)
        if report is None:
            return
        totals = self._global_totals(report, pl_module.device)
        valid = totals["valid"]
        _log(
            pl_module,
            {
                "rollout/success_rate": totals["successes"] / valid if valid else 0.0,
                "rollout/trajectories": totals["trajectories"],
                "rollout/env_steps": totals["env_steps"],
                "rollout/env_steps_total": trainer.datamodule.env_steps_total,
                "rollout/mean_length": totals["env_steps"] / valid if valid else 0.0,
                "rollout/invalid_action_rate": totals["invalid"] / totals["env_steps"] if totals["env_steps"] else 0.0,
                "rollout/env_errors": totals["env_errors"],
                "tasks/sr_mean": report.sr_mean,
                "tasks/above_s0": report.above_s0,
                "tasks/cache_size": report.cache_size,
                "tasks/replaced_copies": report.replaced_copies,
                "tasks/solve_all": report.solve_all,
                "tasks/solve_none": report.solve_none,
                "tasks/solve_partial": report.solve_partial,
                "train/samples": report.samples,
                "train/aug_samples": report.aug_samples,
                "train/adv_mean": report.adv_mean,
            },
        )
        self.history.append(dict(report.rates))
        if trainer.is_global_zero:
            self._log_table(trainer, report)
            if self.plot_every_n_epochs and (trainer.current_epoch + 1) % self.plot_every_n_epochs == 0:
                self.save_picture(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and self.history:
            self.save_picture(trainer)

    def _global_totals(self, report: RoundReport, device: torch.device) -> dict[str, float]:
        local = {
            "trajectories": report.trajectories,
            "valid": report.valid,
            "successes": report.successes,
            "env_errors": report.env_errors,
            "env_steps": report.env_steps,
            "invalid": report.invalid_actions,
        }
        totals = {}
        for name, metric in self._sums.items():
            metric.to(device)
            metric.update(torch.tensor(float(local[name]), device=device))
            totals[name] = float(metric.compute())
            metric.reset()
        return totals

    def _log_table(self, trainer: Trainer, report: RoundReport) -> None:
        if not self.wandb_table:
            return
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                rows = [
                    [task_id, report.rates.get(task_id, float("nan")), k, n]
                    for task_id, (k, n) in sorted(report.task_counts.items())
                ]
                logger.log_table(key="tasks/success_table", columns=["task", "sr_hat", "successes", "valid"], data=rows)

    def save_picture(self, trainer: Trainer) -> Path | None:
        """Per-task ŝ over epochs as a heatmap (tasks × epochs), saved and logged as an image."""
        from steprl.lightning.plots import task_success_heatmap

        out_dir = Path(trainer.default_root_dir) / "plots"
        path = task_success_heatmap(self.history, out_dir / "task_success.png")
        if path is None:
            return None
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "WandbLogger":
                logger.log_image(key="tasks/success_picture", images=[str(path)])
            elif name == "TensorBoardLogger":
                import numpy as np
                from PIL import Image

                image = np.asarray(Image.open(path).convert("RGB"))
                logger.experiment.add_image("tasks/success_picture", image, trainer.current_epoch, dataformats="HWC")
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


class StepTimer(Callback):
    """Logs the time of one RL iteration split into its parts (time/*).

    time/step_s runs from the start of the round (the datamodule's train_dataloader) to the end of
    the epoch's last update (keep StepTimer first in the callback list, so the other callbacks'
    epoch-end work is not counted). Its measured parts: time/rollout_s (= time/env_s + time/generate_s:
    generation wall time and the rest of the collection, i.e. waiting for environments),
    time/augment_s (SL-GRPO), time/old_logprob_s, time/update_s (forward, backward and optimiser
    step of every mini-batch). time/other_s is the step minus those parts: what the framework itself
    spends (sample building, batching, logging, Lightning's loop).
    """

    def __init__(self) -> None:
        self._update_s = 0.0
        self._batch_started = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update_s = 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._update_s += time.perf_counter() - self._batch_started

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        report: RoundReport | None = getattr(trainer.datamodule, "last_round", None)
        if report is None:
            return
        step_s = time.perf_counter() - report.started_at
        measured = report.rollout_s + report.augment_s + report.old_logprob_s + self._update_s
        _log(
            pl_module,
            {
                "time/step_s": step_s,
                "time/rollout_s": report.rollout_s,
                "time/env_s": report.env_s,
                "time/generate_s": report.generate_s,
                "time/augment_s": report.augment_s,
                "time/old_logprob_s": report.old_logprob_s,
                "time/update_s": self._update_s,
                "time/other_s": step_s - measured,
            },
        )


class Evaluation(Callback):
    """Evaluates the policy every `every_n_epochs` epochs, after the last epoch, and (with
    `initial`) once before training.

    - eval/success_rate: the held-out split, greedy unless `greedy=False`;
    - eval/train_success_rate: every training task `train_repeats` times (`train_split`), decoded as
      in training rollouts (sampled) unless `train_greedy=True` — the training success rate over the
      whole training set. rollout/success_rate cannot show it: each epoch rolls out other tasks, and
      SR-Traj moves copies from mastered tasks to hard ones on purpose;
    - eval/initial_success_rate, eval/initial_train_success_rate: the same before the first update
      (measured at fit start, logged with epoch 0; skipped when resuming).
    Evaluation time is not part of time/step_s (it runs after StepTimer has read the step's time, and
    the initial one before the first round starts).
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        greedy: bool = True,
        max_tasks: int | None = None,
        train_split: bool = True,
        train_greedy: bool = False,
        train_repeats: int = 2,
        initial: bool = True,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError("callbacks.evaluation.every_n_epochs must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.greedy = greedy
        self.max_tasks = max_tasks
        self.train_split = train_split
        self.train_greedy = train_greedy
        self.train_repeats = train_repeats
        self.initial = initial
        self._initial_values: dict[str, float] = {}

    def evaluate(self, trainer: Trainer, pl_module: LightningModule, prefix: str = "") -> dict[str, float]:
        datamodule = trainer.datamodule
        values = {f"eval/{prefix}success_rate": datamodule.evaluate(pl_module.policy, greedy=self.greedy, max_tasks=self.max_tasks).success_rate}
        if self.train_split:
            result = datamodule.evaluate(
                pl_module.policy, split="train", greedy=self.train_greedy, max_tasks=self.max_tasks, repeats=self.train_repeats
            )
            values[f"eval/{prefix}train_success_rate"] = result.success_rate
        return values

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.initial and trainer.ckpt_path is None:
            self._initial_values = self.evaluate(trainer, pl_module, prefix="initial_")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._initial_values:
            _log(pl_module, self._initial_values)
            self._initial_values = {}
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs:
            _log(pl_module, self.evaluate(trainer, pl_module))


class RolloutProgress(Callback):
    """Shows rollout progress (finished trajectories / scheduled copies) during the collection phase,
    which is where most of an epoch's time goes and where Lightning's own bar stands still."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.enabled and trainer.is_global_zero and trainer.datamodule is not None:
            trainer.datamodule.progress = self.update

    def update(self, done: int, total: int, label: str = "rollout") -> None:
        from tqdm.auto import tqdm

        if self._bar is None or self._bar.total != total or done < self._bar.n:
            self.close()
            self._bar = tqdm(total=total, desc=label, unit="traj", leave=False, dynamic_ncols=True)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.close()


class WandbRunId(Callback):
    """Stores the W&B run id in every checkpoint so that a resumed run continues the same W&B run
    (train.py reads it back before it builds the logger)."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                run_id = getattr(logger, "version", None)
                if run_id:
                    checkpoint["steprl_wandb_run_id"] = run_id
