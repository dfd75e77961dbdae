"""run(cfg): build everything a training run needs from the Hydra config and call Trainer.fit.

This is the only place that knows every layer (docs/architecture.md: `lightning` <- `train`). It checks the
config first, so a bad value stops the run with one message naming the key, before any worker
process or model is started; it always closes the env workers and finishes W&B, also when a
multirun job fails (so the other jobs of the sweep go on).

Stopping: SIGTERM (a scheduler's preemption, `kill`) stops the rollout within about a second, keeps
the last whole checkpoint, logs the command that resumes the run and exits with 143; Ctrl-C logs
the same command and exits with 130. A run whose environment fails (`RunFailedError`) exits with 1.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
import shlex
import signal
import threading
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from steprl.errors import ConfigError, SteprlError
from steprl.actions import parse_response
from steprl.algo.spec import AlgorithmSpec, build_loss
from steprl.analysis.wandb_group import wandb_group
from steprl.envs import make
from steprl.lightning.callbacks import round_runner_part
from steprl.lightning.checkpoint import check_checkpoint, earlier_checkpoints, load_checkpoint, looks_whole
from steprl.lightning.datamodule import SuccessRateDataModule
from steprl.lightning.module import StepLightningModule
from steprl.rollout import RolloutCollector
from steprl.round import RoundRunner

log = logging.getLogger(__name__)

#: Keys of the env config that are not constructor arguments of the environment.
ENV_META_KEYS = ("name", "worker_seed_key")
#: The settings of the data group (with every key of conf/data/*.yaml); anything else there is a typo.
DATA_KEYS = ("tasks_per_epoch", "rollouts_per_task", "batch_size", "logprob_batch_size", "steps_per_round", "overlap", "max_lag", "overlap_timeout_s")
#: Exit codes of a stopped run (128 + the signal's number, as a shell reports a killed process).
EXIT_SIGTERM, EXIT_SIGINT, EXIT_FAILED = 128 + signal.SIGTERM, 128 + signal.SIGINT, 1


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


def unknown_key_error(group: str, key: str, known: list[str]) -> ConfigError:
    """One message for a key a group does not have (usually a typo added with `+`)."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" Did you mean {group}.{close[0]}?" if close else ""
    return ConfigError(
        f"{group}.{key} is not a setting of {group} (added with +{group}.{key}=...?), so it would be ignored "
        f"or break the run.{hint} Known keys: {', '.join(sorted(known))}."
    )


def check_known_keys(cfg: DictConfig) -> None:
    """data, env and trainer accept only their own keys: a typo such as `+data.rollout_per_task=6`
    would otherwise be ignored silently, and `+env.max_step=6` / `+trainer.max_epoch=2` end in a raw
    TypeError from a constructor."""
    known_data = data_keys(cfg)
    for key in cfg.get("data") or {}:
        if key not in known_data:
            raise unknown_key_error("data", str(key), known_data)
    env_params = constructor_parameters(lambda: env_class(cfg.env.get("name")))
    if env_params is not None:
        for key in cfg.env:
            if key not in ENV_META_KEYS and key not in env_params:
                raise unknown_key_error("env", str(key), [*env_params, *ENV_META_KEYS])
    trainer_params = constructor_parameters(lambda: hydra.utils.get_class(cfg.trainer._target_))
    if trainer_params is not None:
        for key in cfg.trainer:
            if key != "_target_" and not str(key).startswith("_") and key not in trainer_params:
                raise unknown_key_error("trainer", str(key), trainer_params)


def data_keys(cfg: DictConfig) -> list[str]:
    """DATA_KEYS and every key the data group's files (conf/data/*.yaml) define."""
    keys = set(DATA_KEYS)
    for path in (Path(str(cfg.paths.get("root_dir", "."))) / "conf" / "data").glob("*.yaml"):
        keys |= {str(k) for k in OmegaConf.load(path) if str(k) != "defaults" and not str(k).startswith("_")}
    return sorted(keys)


def env_class(name: str | None) -> Any:
    """The class (or factory) registered as environment `name`, imported without building it."""
    from steprl.envs import resolve

    target = resolve(name)
    if callable(target):
        return target
    module_name, attribute = target.split(":")
    import importlib

    return getattr(importlib.import_module(module_name), attribute)


def constructor_parameters(get_target: Any) -> list[str] | None:
    """The keyword names `get_target()` accepts; None when it takes **kwargs or cannot be imported
    (then the constructor itself reports, e.g. a missing optional package with its install command)."""
    try:
        target = get_target()
        params = inspect.signature(target).parameters
    except Exception:  # noqa: BLE001 - ImportError, unknown env: reported later with a better message
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [name for name, p in params.items() if name != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL]


def check_values(cfg: DictConfig) -> None:
    """Values the components would accept but that make no sense for a run."""
    max_epochs = cfg.trainer.get("max_epochs")
    if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 1:
        raise ConfigError(
            f"trainer.max_epochs = {max_epochs!r}; it must be a positive integer (Lightning would take -1 or null "
            "as 'train forever')."
        )
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed = {seed!r}; it must be an integer from 0 to 2**32 - 1.")


def check_hub_model(cfg: DictConfig) -> None:
    """A hub model name for policy.pretrained that is not in the local Hugging Face cache, on a
    machine without a GPU, fails now: downloading a 7B model to train it on CPUs is never what the
    user meant, and without network the hub client would retry for a minute first."""
    name = str(cfg.policy.get("pretrained") or "")
    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return
    import torch

    if torch.cuda.is_available() or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return  # a GPU machine may download it; offline, the policy says what to do without any retry
    if hub_cached(name):
        return
    raise ConfigError(
        f"policy.pretrained={name} is a Hugging Face hub model that is not in the local cache, and this machine has "
        f"no GPU. Download it first (`huggingface-cli download {name}`, where there is network) and run with "
        "HF_HUB_OFFLINE=1 (no hub calls), or point policy.pretrained at a checkpoint directory; on a CPU machine "
        "use the tiny policy (policy=tiny_vlm)."
    )


def hub_cached(name: str) -> bool:
    """Whether the hub model `name` has a config.json in the local cache (no network call)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id=name, filename="config.json")
    return isinstance(found, str)


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
    """The W&B run id a checkpoint was written under (see callbacks.WandbRunId). Memory-mapped, so a
    large checkpoint is not read into memory for it."""
    checkpoint = load_checkpoint(ckpt_path, mmap=True)
    return checkpoint.get("steprl_wandb_run_id")


def check_resume(cfg: DictConfig) -> None:
    """ckpt_path must be a whole checkpoint file (a damaged one names an earlier one to use). With
    W&B on, the resumed run continues the checkpoint's W&B run (`resume` is not a key of
    conf/logger/wandb.yaml, hence open_dict)."""
    if not cfg.get("ckpt_path"):
        return
    if not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; give a checkpoint file from a run's checkpoints/ folder.")
    check_checkpoint(cfg.ckpt_path)
    if "wandb" in (cfg.get("logger") or {}):
        run_id = wandb_id_from_checkpoint(cfg.ckpt_path)
        if run_id:
            with open_dict(cfg):
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
    check_known_keys(cfg)
    check_values(cfg)
    spec = algorithm_spec(cfg)
    check_data(cfg, spec)
    check_resume(cfg)
    check_hub_model(cfg)
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
        datamodule = SuccessRateDataModule(runner, eval_tasks, batch_size=cfg.data.batch_size, steps_per_round=cfg.data.get("steps_per_round"), overlap=bool(cfg.data.get("overlap", False)), max_lag=int(cfg.data.get("max_lag", 1)), overlap_timeout_s=cfg.data.get("overlap_timeout_s"))
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


class RunStopped(SystemExit):
    """The run was stopped by a signal (SIGTERM: exit 143, Ctrl-C: exit 130) after its resume command
    was logged. A SystemExit, so a multirun's per-job error handling does not swallow it: a stopped
    sweep stops."""


class StopSignals:
    """While the run trains: SIGTERM asks the collector to stop (it raises within about a second;
    Lightning's own handler, which it chains, stops at the end of an epoch in the update phase);
    Ctrl-C raises KeyboardInterrupt as usual. Both are remembered, so `run` can tell a stop from
    a failure. Handlers only set flags: a checkpoint being written is never cut."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in ((signal.SIGTERM, self._on_sigterm), (signal.SIGINT, self._on_sigint)):
                self._previous[signum] = signal.signal(signum, handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self.received is None:
            log.warning("SIGTERM received: stopping the rollout; the last whole checkpoint is kept.")
        self.received = "SIGTERM"
        self.collector.request_stop()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.received = self.received or "SIGINT"
        self.collector.request_stop()
        raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.received == "SIGTERM" else EXIT_SIGINT


def checkpoint_dir(parts: Run, cfg: DictConfig) -> Path:
    """Where this run's checkpoints go (the checkpoint callback's folder)."""
    callback = getattr(parts.trainer, "checkpoint_callback", None)
    dirpath = getattr(callback, "dirpath", None)
    return Path(dirpath) if dirpath else Path(cfg.paths.output_dir) / "checkpoints"


def resume_checkpoint(directory: Path) -> Path | None:
    """The checkpoint to resume from: last.ckpt if it is whole, else the newest whole one."""
    last = directory / "last.ckpt"
    if last.is_file() and looks_whole(last):
        return last
    others = earlier_checkpoints(last)
    return others[0] if others else None


def command_overrides() -> list[str]:
    """The command line's overrides (under Hydra), without an earlier ckpt_path."""
    try:
        overrides = list(hydra.core.hydra_config.HydraConfig.get().overrides.task)
    except ValueError:  # not under @hydra.main
        overrides = []
    return [o for o in overrides if not o.lstrip("+~").startswith("ckpt_path=")]


def resume_message(parts: Run, cfg: DictConfig) -> str:
    """The command that continues this run from its last whole checkpoint (or what to do without one)."""
    checkpoint = resume_checkpoint(checkpoint_dir(parts, cfg))
    if checkpoint is None:
        return "No checkpoint was written yet (no epoch finished): start the run again with the same command."
    args = " ".join(shlex.quote(o) for o in [*command_overrides(), f"ckpt_path={checkpoint}"])
    return f"To resume from {checkpoint}:\n  python train.py {args}"


def log_config_summary(cfg: DictConfig, parts: Run) -> None:
    """A few lines at the top of train.log: where the run writes, and what it runs."""
    out = Path(cfg.paths.output_dir)
    datamodule = parts.datamodule
    log.info(
        "config: algo=%s | env=%s (%d training / %d held-out tasks) | policy=%s | B x N = %s x %s | "
        "max_epochs=%s | seed=%s | rollout=%s x %s workers | loggers: %s",
        cfg.algo.get("name"), cfg.env.get("name"), len(round_runner_part(datamodule, "tasks") or []),
        len(getattr(datamodule, "eval_tasks", []) or []), cfg.policy.get("pretrained"),
        cfg.data.tasks_per_epoch, cfg.data.rollouts_per_task, cfg.trainer.max_epochs, cfg.seed,
        str(cfg.rollout.pool.get("_target_", "?")).rsplit(".", 1)[-1], cfg.rollout.pool.get("num_workers"),
        ", ".join(cfg.get("logger") or {}) or "none",
    )
    if cfg.get("ckpt_path"):
        log.info("resuming from %s", cfg.ckpt_path)
    log.info("full config: %s; metrics: %s; checkpoints: %s", out / ".hydra" / "config.yaml", out / "metrics.csv", checkpoint_dir(parts, cfg))


def quiet_known_warnings(cfg: DictConfig) -> None:
    """Two Lightning warnings every run would print for nothing: the CSV logger's 'exists and is not
    empty' (Hydra has written .hydra/ and train.log in the run directory; it only matters when a
    metrics.csv is already there), and 'does not have many workers' (the round's batches are
    already in memory: DataLoader workers would only copy them)."""
    if not (Path(cfg.paths.output_dir) / "metrics.csv").exists():
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"The 'train_dataloader' does not have many workers")


def run(cfg: DictConfig) -> float | None:
    """Train; returns the last value of `cfg.optimized_metric` (for Hydra sweepers). Raises
    RunStopped (SystemExit 143 / 130) after SIGTERM / Ctrl-C, with the resume command logged."""
    quiet_known_warnings(cfg)
    log.info("run directory: %s", Path(cfg.paths.output_dir).resolve())
    parts = build(cfg)
    log_config_summary(cfg, parts)
    try:
        with StopSignals(parts.collector) as signals:
            try:
                for logger in parts.loggers:
                    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
                parts.trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=cfg.get("ckpt_path"))
            except BaseException as error:
                if signals.received is None:
                    raise
                log.warning("Run stopped by %s. %s", signals.received, resume_message(parts, cfg))
                raise RunStopped(signals.exit_code) from error
        log.info("done: run directory %s", Path(cfg.paths.output_dir).resolve())
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
    """`run(cfg)` as a Hydra job. A single run that fails with one of steprl's errors logs its message
    and exits with 1. In a multirun, a job that fails is logged, its traceback written to
    `error.txt` in its directory, and None is returned (the Optuna sweeper marks the trial failed; a
    NaN would stop the study), so the other jobs of the sweep go on."""
    print_lightning_logs_once()
    if not in_multirun():
        try:
            return run(cfg)
        except SteprlError as error:  # the user's to fix: the message says how (no traceback)
            log.error("%s: %s", type(error).__name__, error)
            raise SystemExit(EXIT_FAILED) from None
    try:
        return run(cfg)
    except Exception:
        import traceback

        log.exception("This job failed; the sweep goes on with the next one.")
        out_dir = Path(cfg.paths.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "error.txt").write_text(traceback.format_exc())
        return None
