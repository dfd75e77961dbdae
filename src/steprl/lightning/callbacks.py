"""Callbacks: success curves, time per step, held-out evaluation, run health, the per-epoch log
line, rollout progress, W&B run id.

They read what the datamodule recorded for the round (`datamodule.last_round`, a RoundReport) and
log it under the metric names of the README's glossary. Metrics are logged once per epoch
(= one RL iteration). A success rate over no valid trajectory is undefined and logged as NaN (a
broken environment must not look like a policy that fails every task).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchmetrics import SumMetric

from steprl.errors import RunFailedError
from steprl.lightning.strategies import policy_for_round
from steprl.round import RoundReport

log = logging.getLogger(__name__)

#: Collector health counters (CollectStats field -> metric name), summed over ranks every epoch.
HEALTH_METRICS = {
    "restarts": "rollout/env_restarts",
    "retries": "rollout/env_retries",
    "timeouts": "rollout/env_timeouts",
    "quarantined": "rollout/env_quarantined",
}


def _log(pl_module: LightningModule, values: dict[str, float], logged: dict[str, float] | None = None) -> None:
    """Log epoch-level values. Every value here is already global (summed across ranks) or a
    rank's own timing, so under DDP Lightning only averages them (sync_dist, which also stops its
    per-metric warning). `logged` collects what was logged, for the per-epoch log line."""
    trainer = getattr(pl_module, "_trainer", None)
    sync = trainer is not None and trainer.world_size > 1
    for name, value in values.items():
        pl_module.log(name, float(value), on_step=False, on_epoch=True, batch_size=1, sync_dist=sync)
        if logged is not None:
            logged[name] = float(value)


def rate(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 (the rate is undefined)."""
    return numerator / denominator if denominator else math.nan


def collect_stats(report: Any) -> Any:
    """The round's CollectStats (restarts, retries, timeouts, quarantined workers), or None."""
    return getattr(report, "collect_stats", None)


def round_runner_part(datamodule: Any, name: str) -> Any:
    """`name` (tasks, algo, ...) from the datamodule or from the RoundRunner it drives."""
    value = getattr(datamodule, name, None)
    if value is None:
        value = getattr(getattr(datamodule, "runner", None), name, None)
    return value


def global_sums(trainer: Trainer, local: dict[str, float]) -> dict[str, float]:
    """Sum each value over ranks (the same numbers on every rank; no-op on one process)."""
    if trainer.world_size <= 1:
        return {name: float(value) for name, value in local.items()}
    names = list(local)
    tensor = torch.tensor([float(local[n]) for n in names], dtype=torch.float64, device=trainer.strategy.root_device)
    total = trainer.strategy.reduce(tensor, reduce_op="sum")
    return {name: float(value) for name, value in zip(names, total.tolist())}


class SuccessCurves(Callback):
    """Logs rollout/* and tasks/* metrics, the collector's health, the per-task success table and
    two pictures.

    Success counts are summed across ranks with torchmetrics (SumMetric syncs under DDP), so
    `rollout/success_rate` is the success rate over every valid trajectory of the round (NaN when
    none was valid). Every `plot_every_n_epochs` epochs and at the end it writes, in the run's
    `plots/`, `success_curve.png` (success and held-out success against epoch and env steps, tasks
    above s0) and `task_success.png` (ŝ_i per task over epochs), and logs both to W&B /
    TensorBoard when those loggers are on.
    """

    def __init__(self, plot_every_n_epochs: int = 5, wandb_table: bool = True) -> None:
        self.plot_every_n_epochs = plot_every_n_epochs
        self.wandb_table = wandb_table
        self.history: list[dict[str, float]] = []  # ŝ per task after each epoch (for the picture)
        self.curve: list[dict[str, float]] = []  # one point per epoch (for the success curve)
        self.logged: dict[str, float] = {}  # this epoch's values (read by RunLog)
        self._sums = {
            name: SumMetric()
            for name in ("trajectories", "valid", "successes", "env_errors", "env_steps", "invalid", *HEALTH_METRICS)
        }

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        report: RoundReport | None = getattr(trainer.datamodule, "last_round", None)
        if report is None:
            return
        totals = self._global_totals(report, pl_module.device, collect_stats(report))
        valid = totals["valid"]
        self.logged = {}
        _log(
            pl_module,
            {
                "rollout/success_rate": rate(totals["successes"], valid),
                "rollout/trajectories": totals["trajectories"],
                "rollout/valid": valid,
                "rollout/env_steps": totals["env_steps"],
                "rollout/env_steps_total": trainer.datamodule.env_steps_total,
                "rollout/mean_length": rate(totals["env_steps"], valid),
                "rollout/invalid_action_rate": rate(totals["invalid"], totals["env_steps"]),
                "rollout/env_errors": totals["env_errors"],
                **{metric: totals[field] for field, metric in HEALTH_METRICS.items()},
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
                "train/optimizer_steps": getattr(report, "optimizer_steps", 0),
                "train/failed_credit_samples": report.failed_credit_samples,
                "train/aug_outcome_groups": report.aug_outcome_groups,
                "rollout/aug_env_steps": report.aug_env_steps,
            },
            self.logged,
        )
        self.history.append(dict(report.rates))
        self.curve.append(
            {
                "epoch": trainer.current_epoch + 1,
                "env_steps_total": float(trainer.datamodule.env_steps_total),
                "success_rate": self.logged["rollout/success_rate"],
                "above_s0": float(report.above_s0),
                "tasks": float(len(round_runner_part(trainer.datamodule, "tasks") or report.rates)),
            }
        )
        if trainer.is_global_zero:
            self._log_table(trainer, report)
            if self.plot_every_n_epochs and (trainer.current_epoch + 1) % self.plot_every_n_epochs == 0:
                self.save_picture(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and self.history:
            self.save_picture(trainer)

    def _global_totals(self, report: RoundReport, device: torch.device, stats: Any = None) -> dict[str, float]:
        local = {
            "trajectories": report.trajectories,
            "valid": report.valid,
            "successes": report.successes,
            "env_errors": report.env_errors,
            "env_steps": report.env_steps,
            "invalid": report.invalid_actions,
            **{field: getattr(stats, field, 0) if stats is not None else 0 for field in HEALTH_METRICS},
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
        """The success curve and the per-task heatmap (tasks × epochs), saved and logged as images;
        returns the heatmap's path (None before any task was seen)."""
        from steprl.lightning.plots import success_curve, task_success_heatmap

        out_dir = Path(trainer.default_root_dir) / "plots"
        evaluation = next((c for c in trainer.callbacks if isinstance(c, Evaluation)), None)
        s0 = getattr(round_runner_part(trainer.datamodule, "algo"), "s0", None)
        curve = success_curve(self.curve, evaluation.history if evaluation else [], out_dir / "success_curve.png", s0=s0)
        if curve is not None:
            self._log_image(trainer, "rollout/success_curve", curve)
        path = task_success_heatmap(self.history, out_dir / "task_success.png")
        if path is not None:
            self._log_image(trainer, "tasks/success_picture", path)
        return path

    @staticmethod
    def _log_image(trainer: Trainer, key: str, path: Path) -> None:
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "WandbLogger":
                logger.log_image(key=key, images=[str(path)])
            elif name == "TensorBoardLogger":
                import numpy as np
                from PIL import Image

                image = np.asarray(Image.open(path).convert("RGB"))
                logger.experiment.add_image(key, image, trainer.current_epoch, dataformats="HWC")

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "curve": self.curve}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.curve = list(state_dict.get("curve", []))


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
        self.logged: dict[str, float] = {}  # this epoch's values (read by RunLog)

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
        # the trainer's share of the rollout is what it waited for (all of it when synchronous)
        measured = report.wait_data_s + report.augment_s + report.old_logprob_s + self._update_s
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
                "time/wait_data_s": report.wait_data_s,
                "time/env_idle_s": report.env_idle_s,
                "time/policy_lag": float(report.policy_lag),
            },
            self.logged,
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
      (measured at fit start, logged with epoch 0; skipped when resuming);
    - eval/env_errors, eval/train_env_errors: rollouts of each split lost to env errors.
    A split with no valid rollout has an undefined success rate: NaN. `history` keeps every
    evaluation (epoch, env steps, values) for the success-curve picture (and is checkpointed).
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
        self.history: list[dict[str, Any]] = []  # {"epoch", "env_steps_total", "values"} per evaluation
        self.logged: dict[str, float] = {}  # this epoch's values (read by RunLog)

    def evaluate(self, trainer: Trainer, pl_module: LightningModule, prefix: str = "") -> dict[str, float]:
        with policy_for_round(trainer) as policy:  # the rollout engine has the latest weights, FSDP's root is set up
            return self._evaluate(trainer.datamodule, policy, prefix)

    def _evaluate(self, datamodule: Any, policy: Any, prefix: str) -> dict[str, float]:
        result = datamodule.evaluate(policy, greedy=self.greedy, max_tasks=self.max_tasks)
        values = {
            f"eval/{prefix}success_rate": rate(result.successes, result.valid),
            f"eval/{prefix}env_errors": float(result.env_errors),
        }
        if self.train_split:
            result = datamodule.evaluate(
                policy, split="train", greedy=self.train_greedy, max_tasks=self.max_tasks, repeats=self.train_repeats
            )
            values[f"eval/{prefix}train_success_rate"] = rate(result.successes, result.valid)
            values[f"eval/{prefix}train_env_errors"] = float(result.env_errors)
        return values

    def _remember(self, trainer: Trainer, epoch: int, values: dict[str, float]) -> None:
        plain = {name.replace("eval/initial_", "eval/"): value for name, value in values.items()}
        steps = float(getattr(trainer.datamodule, "env_steps_total", 0)) if epoch else 0.0
        self.history.append({"epoch": epoch, "env_steps_total": steps, "values": plain})

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.initial and trainer.ckpt_path is None:
            log.info("initial evaluation (before the first update) ...")
            self._initial_values = self.evaluate(trainer, pl_module, prefix="initial_")
            self._remember(trainer, 0, self._initial_values)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.logged = {}

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._initial_values:
            _log(pl_module, self._initial_values, self.logged)
            self._initial_values = {}
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs:
            values = self.evaluate(trainer, pl_module)
            _log(pl_module, values, self.logged)
            self._remember(trainer, epoch, values)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


class RunHealth(Callback):
    """Stops the run (RunFailedError, so the process exits non-zero) at the end of an epoch in which
    no trajectory was valid, or in which more than `max_env_error_share` of the trajectories ended
    in env errors: the environment is broken, and training on what is left would only look like a
    policy that fails. The message gives the counts and the collector's restarts / retries /
    timeouts / quarantined workers. Keep it before the checkpoint callback: the failed epoch is not
    checkpointed, so the last checkpoint is the last healthy epoch."""

    def __init__(self, max_env_error_share: float | None = 0.5) -> None:
        if max_env_error_share is not None and not 0.0 <= max_env_error_share <= 1.0:
            raise ValueError(f"callbacks.run_health.max_env_error_share = {max_env_error_share}; it must be in [0, 1] or null.")
        self.max_env_error_share = max_env_error_share

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        report = getattr(trainer.datamodule, "last_round", None)
        if report is None:
            return
        stats = collect_stats(report)
        totals = global_sums(
            trainer,
            {
                "trajectories": report.trajectories,
                "valid": report.valid,
                "env_errors": report.env_errors,
                **{field: getattr(stats, field, 0) if stats is not None else 0 for field in HEALTH_METRICS},
            },
        )
        problem = self.problem(totals)
        if problem:
            raise RunFailedError(f"Epoch {trainer.current_epoch}: {problem} {self.health_text(totals)} {self.advice()}")

    def problem(self, totals: dict[str, float]) -> str | None:
        """What is wrong with this epoch's rollouts, or None."""
        trajectories, valid, errors = int(totals["trajectories"]), int(totals["valid"]), int(totals["env_errors"])
        if trajectories == 0:
            return None
        if valid == 0:
            return f"none of the {trajectories} trajectories was valid (all ended in env errors), so the success rate is undefined."
        share = errors / trajectories
        if self.max_env_error_share is not None and share > self.max_env_error_share:
            return (
                f"{errors} of {trajectories} trajectories ({share:.0%}) ended in env errors, more than "
                f"callbacks.run_health.max_env_error_share={self.max_env_error_share:g}."
            )
        return None

    @staticmethod
    def health_text(totals: dict[str, float]) -> str:
        return "Env workers: " + ", ".join(f"{int(totals[f])} {f}" for f in HEALTH_METRICS) + "."

    @staticmethod
    def advice() -> str:
        return (
            "The environment is failing, not the policy: see the 'env worker' warnings above (and train.log), "
            "fix the environment (VMs, emulators, env settings), then resume from the last checkpoint."
        )


class RunLog(Callback):
    """One line per epoch in the console and train.log: success, held-out success (when measured),
    tasks above s0, env errors and time per RL step. Keep it after StepTimer, SuccessCurves and
    Evaluation (it prints what they logged this epoch)."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        values: dict[str, float] = {}
        for callback in trainer.callbacks:
            values.update(getattr(callback, "logged", None) or {})
        log.info(epoch_line(trainer.current_epoch + 1, trainer.max_epochs, values, round_runner_part(trainer.datamodule, "tasks")))


def epoch_line(epoch: int, max_epochs: int | None, values: dict[str, float], tasks: Any = None) -> str:
    """e.g. "epoch 3/40 | success 0.625 (8 valid of 8) | held-out 0.500 | tasks above s0 12/32 |
    env errors 0 | 4.1 s/step (rollout 2.9 s)"."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    parts = [f"epoch {epoch}/{max_epochs if max_epochs and max_epochs > 0 else '?'}"]
    if "rollout/success_rate" in values:
        parts.append(
            f"success {fmt(values['rollout/success_rate'])} ({int(values.get('rollout/valid', 0))} valid of "
            f"{int(values.get('rollout/trajectories', 0))})"
        )
    if "eval/success_rate" in values:
        parts.append(f"held-out {fmt(values['eval/success_rate'])}")
    if "tasks/above_s0" in values:
        parts.append(f"tasks above s0 {int(values['tasks/above_s0'])}" + (f"/{len(tasks)}" if tasks else ""))
    if "rollout/env_errors" in values:
        parts.append(f"env errors {int(values['rollout/env_errors'])}")
    if "time/step_s" in values:
        parts.append(f"{values['time/step_s']:.1f} s/step (rollout {values.get('time/rollout_s', math.nan):.1f} s)")
    return " | ".join(parts)


class RolloutProgress(Callback):
    """Shows rollout progress (finished trajectories / scheduled copies) during the collection phase,
    which is where most of an epoch's time goes and where Lightning's own bar stands still. It is
    installed at setup, so the initial evaluation (before the first epoch) shows progress too."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
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
