"""run(cfg): build everything a training run needs from the Hydra config and call Trainer.fit.

This is the only place that knows every layer (docs/architecture.md: `lightning` <- `train`). It checks the
config first, so a bad value stops the run with one message naming the key, before any worker
process or model is started; it always closes the env workers and finishes W&B, also when a
multirun job fails (so the other jobs of the sweep go on).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from steprl.errors import ConfigError
from steprl.actions import parse_response
from steprl.algo.spec import AlgorithmSpec, build_loss
from steprl.analysis.wandb_group import wandb_group
from steprl.envs import make
from steprl.lightning.datamodule import SuccessRateDataModule
from steprl.lightning.module import StepLightningModule
from steprl.rollout import RolloutCollector
from steprl.round import RoundRunner

log = logging.getLogger(__name__)

#: Keys of the env config that are not constructor arguments of the environment.
ENV_META_KEYS = ("name", "worker_seed_key")




# ---------------------------------------------------------------------------------------- config
def algorithm_spec(cfg: DictConfig) -> AlgorithmSpec:
    """The algorithm switches from `cfg.algo` (one clear message for unknown keys / bad values)."""
    try:
        return AlgorithmSpec.from_config(OmegaConf.to_container(cfg.algo, resolve=True))
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None


def check_data(cfg: DictConfig, spec: AlgorithmSpec) -> None:
    """B, N and batch sizes must be positive integers; N must suit the advantage estimator."""
    for key in ("tasks_per_epoch", "rollouts_per_task", "batch_size", "logprob_batch_size"):
        value = cfg.data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"data.{key} = {value!r}; it must be a positive integer.")
    try:
        spec.validate_budget(cfg.data.rollouts_per_task)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def env_settings(cfg: DictConfig) -> tuple[str, dict[str, Any], str | None]:
    """(name, constructor kwargs, the kwarg that seeds each worker differently) from `cfg.env`."""
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    if "name" not in env_cfg:
        raise ConfigError("env.name is missing: choose an environment with env=minidesk|miniwob|osworld|androidworld.")
    kwargs = {k: v for k, v in env_cfg.items() if k not in ENV_META_KEYS}
    return env_cfg["name"], kwargs, env_cfg.get("worker_seed_key")


# ---------------------------------------------------------------------------------------- building
def instantiate(config: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, re-raising the component's own error (its message says what to do)
    instead of Hydra's wrapper around it."""
    try:
        return hydra.utils.instantiate(config, **kwargs)
    except InstantiationException as error:
        raise (error.__cause__ or error) from None


def build_policy(cfg: DictConfig) -> Any:
    policy_cfg = OmegaConf.to_container(cfg.policy, resolve=True)
    if not policy_cfg.get("pretrained"):
        raise ConfigError(
            "policy.pretrained is empty: give a checkpoint directory or hub name "
            "(the tiny MiniDesk policy is built by `python scripts/warmstart_tiny.py --out DIR`)."
        )
    return instantiate(policy_cfg)


def build_collector(cfg: DictConfig, spec: AlgorithmSpec, env_name: str, env_kwargs: dict, seed_key: str | None) -> RolloutCollector:
    pool = instantiate(cfg.rollout.pool, env=env_name, env_kwargs=env_kwargs, seed_kwarg=seed_key, _convert_="all")
    return RolloutCollector(
        pool,
        history_responses=spec.history_responses,
        history_screenshots=spec.history_screenshots,
        success_threshold=spec.success_threshold,
        **OmegaConf.to_container(cfg.rollout.collector, resolve=True),
    )


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = []
    for name, logger_cfg in (cfg.get("logger") or {}).items():
        if name == "wandb":  # named from the overrides; one group per multirun (see analysis.wandb_group)
            logger_cfg = OmegaConf.merge(
                logger_cfg,
                {"name": logger_cfg.get("name") or run_name(cfg), "group": logger_cfg.get("group") or wandb_group(cfg.task_name)},
            )
        loggers.append(instantiate(logger_cfg))
    return loggers


def run_name(cfg: DictConfig) -> str:
    """The experiment's name plus its command-line overrides (e.g. "step s0=0.5,s_low=0.1")."""
    try:
        overrides = hydra.core.hydra_config.HydraConfig.get().job.override_dirname
    except ValueError:  # not running under @hydra.main (tests compose configs directly)
        overrides = ""
    return f"{cfg.algo.name} {overrides}".strip()


def wandb_id_from_checkpoint(ckpt_path: str) -> str | None:
    """The W&B run id a checkpoint was written under (see callbacks.WandbRunId)."""
    import torch

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return checkpoint.get("steprl_wandb_run_id")


def check_resume(cfg: DictConfig) -> None:
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; give a checkpoint file from a run's checkpoints/ folder.")
    if cfg.get("ckpt_path") and "wandb" in (cfg.get("logger") or {}):
        run_id = wandb_id_from_checkpoint(cfg.ckpt_path)
        if run_id:
            cfg.logger.wandb.id = run_id
            cfg.logger.wandb.resume = "allow"


# ---------------------------------------------------------------------------------------- run
@dataclass
class Run:
    """Everything a training run is made of (built by `build`, used by `run`)."""

    trainer: pl.Trainer
    module: StepLightningModule
    datamodule: SuccessRateDataModule
    collector: RolloutCollector
    loggers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Stop the env workers and finish W&B (also after a failure)."""
        self.collector.close()
        for logger in self.loggers:
            if type(logger).__name__ == "WandbLogger":
                import wandb

                wandb.finish()


def build(cfg: DictConfig) -> Run:
    """Check the config, then build the policy, env workers, datamodule, module and Trainer."""
    spec = algorithm_spec(cfg)
    check_data(cfg, spec)
    check_resume(cfg)
    env_name, env_kwargs, seed_key = env_settings(cfg)
    if spec.sample_level == "trajectory" and int(env_kwargs.get("max_steps") or 0) > spec.max_images:
        raise ConfigError(
            f"algo.sample_level=trajectory trains each trajectory as the messages the policy acted in, but env.max_steps="
            f"{env_kwargs['max_steps']} turns do not fit algo.max_images={spec.max_images} screenshots: raise algo.max_images, "
            "algo.history_responses and algo.history_screenshots to env.max_steps, or use algo=t_grpo_window."
        )
    pl.seed_everything(cfg.seed, workers=True)

    policy = build_policy(cfg)
    probe = make(env_name, **env_kwargs)  # lists the tasks in this process; starts no VM
    screen_size = probe.screen_size
    env_kwargs.setdefault("coords", policy.coords)
    env_kwargs.setdefault("model_image_size", list(policy.model_image_size(screen_size)))
    train_tasks, eval_tasks = probe.tasks("train"), probe.tasks("test")
    if spec.augment and spec.aug_reward == "env" and not getattr(probe, "supports_snapshot", False):
        probe.close()
        raise ConfigError(f"algo.aug_reward=env replays steps from a saved state; environment '{env_name}' cannot snapshot/restore. Use algo.aug_reward=equivalence.")
    probe.close()
    if not train_tasks:
        raise ConfigError(f"Environment '{env_name}' has no training tasks with this config.")

    collector = build_collector(cfg, spec, env_name, env_kwargs, seed_key)
    try:
        runner = RoundRunner(
            train_tasks=train_tasks,
            collector=collector,
            algo=spec,
            tasks_per_epoch=cfg.data.tasks_per_epoch,
            rollouts_per_task=cfg.data.rollouts_per_task,
            logprob_batch_size=cfg.data.logprob_batch_size,
            parse_action=partial(parse_response, screen_size=screen_size, coords=env_kwargs["coords"], image_size=tuple(env_kwargs["model_image_size"])),
            screen_size=screen_size,
            seed=cfg.seed,
        )
        datamodule = SuccessRateDataModule(runner, eval_tasks, batch_size=cfg.data.batch_size, steps_per_round=cfg.data.get("steps_per_round"))
        module = StepLightningModule(
            policy=policy,
            loss=build_loss(spec),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        )
        loggers = build_loggers(cfg)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    except BaseException:
        collector.close()
        raise
    return Run(trainer, module, datamodule, collector, loggers)


def run(cfg: DictConfig) -> float | None:
    """Train; returns the last value of `cfg.optimized_metric` (for Hydra sweepers)."""
    parts = build(cfg)
    try:
        for logger in parts.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        parts.trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=cfg.get("ckpt_path"))
        value = parts.trainer.callback_metrics.get(cfg.optimized_metric)
        return None if value is None or math.isnan(float(value)) else float(value)
    finally:
        parts.close()


def in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not under @hydra.main
        return False


def print_lightning_logs_once() -> None:
    """Under Hydra the root logger already prints (and writes train.log); the `lightning` package adds
    a console handler of its own, which would print every Lightning message twice."""
    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        if type(handler) is logging.StreamHandler:
            lightning_logger.removeHandler(handler)


def run_job(cfg: DictConfig) -> float | None:
    """`run(cfg)` as a Hydra job. In a multirun, a job that fails is logged, its traceback written to
    `error.txt` in its directory, and None is returned (the Optuna sweeper marks the trial failed; a
    NaN would stop the study), so the other jobs of the sweep go on."""
    print_lightning_logs_once()
    if not in_multirun():
        return run(cfg)
    try:
        return run(cfg)
    except Exception:
        import traceback

        log.exception("This job failed; the sweep goes on with the next one.")
        out_dir = Path(cfg.paths.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "error.txt").write_text(traceback.format_exc())
        return None
