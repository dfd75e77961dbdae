"""Every experiment composes; the MiniDesk ones build their datamodule, module and Trainer; bad
input gives one clear message."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from steprl.algo.spec import AlgorithmSpec
from steprl.train import ConfigError, build
from tests.train_config import CONF, FAST, ROOT, algo_spec, compose_train

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
MINIDESK_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith("minidesk_")]


def test_experiments_exist():
    for required in ["minidesk_step", "minidesk_tgrpo", "minidesk_gigpo", "minidesk_step_no_srtraj",
                     "minidesk_step_no_sradv", "minidesk_step_no_slgrpo", "minidesk_step_no_both",
                     "minidesk_step_decomp_only", "osworld_step", "osworld_tgrpo", "osworld_gigpo",
                     "androidworld_step", "androidworld_tgrpo", "miniwob_step", "miniwob_tgrpo"]:
        assert required in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_to_a_valid_algorithm(experiment):
    cfg = compose_train([f"+experiment={experiment}"])
    spec = AlgorithmSpec.from_config(OmegaConf.to_container(cfg.algo, resolve=True))
    spec.validate_budget(cfg.data.rollouts_per_task)
    assert cfg.task_name == experiment


@pytest.mark.parametrize("experiment", MINIDESK_EXPERIMENTS)
def test_minidesk_experiments_are_a_setting_and_an_algorithm(experiment):
    """+experiment=minidesk_X is an alias: the minidesk setting with conf/algo/X.yaml, nothing else."""
    cfg = compose_train([f"+experiment={experiment}"])
    spec = AlgorithmSpec.from_config(OmegaConf.to_container(cfg.algo, resolve=True))
    assert spec == algo_spec(spec.name)


@pytest.mark.parametrize("experiment", MINIDESK_EXPERIMENTS)
def test_minidesk_experiments_build_datamodule_module_and_trainer(experiment, tmp_path):
    parts = build(compose_train([f"+experiment={experiment}", *FAST], tmp_path))
    try:
        assert parts.datamodule.runner.algo.name == compose_train([f"+experiment={experiment}"]).algo.name
        assert parts.trainer.reload_dataloaders_every_n_epochs == 1
        assert sum(p.requires_grad for p in parts.module.policy.parameters()) > 0
    finally:
        parts.close()


def test_unknown_experiment_names_the_available_ones():
    with pytest.raises(ConfigCompositionException) as error:
        compose_train(["+experiment=no_such_thing"])
    assert "no_such_thing" in str(error.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("algo.s0=1.5", "s0"),
        ("algo.s0=0", "s0"),
        ("algo.kappa=-1", "kappa"),
        ("algo.sampling=random", "sampling"),
        ("+algo.no_such_knob=1", "no_such_knob"),
        ("data.rollouts_per_task=0", "rollouts_per_task"),
        ("data.tasks_per_epoch=-2", "tasks_per_epoch"),
    ],
)
def test_bad_values_stop_with_one_message_naming_the_key(override, key, tmp_path):
    with pytest.raises(ConfigError, match=key):
        build(compose_train([*FAST, override], tmp_path))


def test_grpo_needs_at_least_two_rollouts_per_task(tmp_path):
    with pytest.raises(ConfigError, match="rollouts_per_task|N"):
        build(compose_train(["+experiment=minidesk_tgrpo", *FAST, "data.rollouts_per_task=1"], tmp_path))


def test_missing_optional_dependency_names_the_install_command(tmp_path, monkeypatch):
    """OSWorld without the desktop-env package: one message with the pip command (no VM started)."""
    monkeypatch.setitem(sys.modules, "desktop_env", None)  # makes `import desktop_env` fail
    cfg = compose_train(["+experiment=osworld_step", "env.osworld_root=" + str(tmp_path), "policy.pretrained="
                         + str(ROOT / "assets" / "policies" / "tiny-minidesk"), "policy.dtype=float32", "policy.lora=null",
                         "policy.gradient_checkpointing=false", "trainer=cpu", "rollout=inprocess", "logger=csv"], tmp_path)
    with pytest.raises(ImportError, match=r"pip install"):
        build(cfg)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises((ConfigError, OSError), match="does-not-exist"):
        build(compose_train(["policy.pretrained=" + str(tmp_path / "does-not-exist"), *FAST], tmp_path))


def readme_train_commands() -> list[str]:
    """The arguments of every `python train.py ...` line in the README's code blocks (comments dropped;
    placeholders like <date>_<time> are the user's to fill in)."""
    commands, in_code = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        match = re.search(r"python train\.py(.*)$", line) if in_code else None
        if match:
            commands.append(re.sub(r"<[^>]+>", "x", match.group(1).split("#")[0]).strip())
    return commands


def test_readme_commands_compose():
    """Each README command line composes (single runs; multirun sweeps are expanded to their first job)."""
    commands = readme_train_commands()
    assert commands, "the README has no python train.py command"
    for args in commands:
        overrides = [a for a in args.split() if a not in ("-m", "--multirun") and not a.startswith("hydra/")]
        overrides = [re.sub(r"=([^=,\[]+),[^ ]*$", r"=\1", o) if "," in o and "[" not in o else o for o in overrides]
        compose_train(overrides)


@pytest.mark.parametrize(
    "override, named, suggested",
    [
        ("+data.rollout_per_task=6", "data.rollout_per_task", "data.rollouts_per_task"),
        ("+env.max_step=6", "env.max_step", "env.max_steps"),
        ("+trainer.max_epoch=2", "trainer.max_epoch", "trainer.max_epochs"),
    ],
)
def test_an_unknown_key_added_with_plus_is_named_with_the_closest_known_key(override, named, suggested, tmp_path):
    with pytest.raises(ConfigError) as error:
        build(compose_train([*FAST, override], tmp_path))
    assert named in str(error.value) and f"Did you mean {suggested}?" in str(error.value)


@pytest.mark.parametrize("override, key", [("trainer.max_epochs=-1", "trainer.max_epochs"), ("trainer.max_epochs=0", "trainer.max_epochs"),
                                           ("seed=-1", "seed"), ("seed=4294967296", "seed")])
def test_impossible_values_stop_with_one_message_naming_the_key(override, key, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(key)):
        build(compose_train([*FAST, override], tmp_path))


def test_an_uncached_hub_model_on_a_cpu_machine_fails_at_once_and_mentions_offline_mode(tmp_path, monkeypatch):
    """No hub retries: the check reads only the local cache (an empty one here) and says what to do."""
    import time

    import torch

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("socket.socket.connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network used")))
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        build(compose_train([*FAST, "policy.pretrained=SomeOrg/Some-VLM-7B"], tmp_path))
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert "policy.pretrained=SomeOrg/Some-VLM-7B" in message and "HF_HUB_OFFLINE" in message and "download" in message


def test_checkpoints_of_the_default_callbacks_are_written_atomically_and_named_plainly():
    cfg = compose_train([])
    assert cfg.callbacks.model_checkpoint._target_ == "steprl.lightning.checkpoint.SafeModelCheckpoint"
    assert cfg.callbacks.run_health.max_env_error_share == 0.5


@pytest.mark.parametrize(
    "override, named",
    [
        ("trainer.reload_dataloaders_every_n_epochs=2", "trainer.reload_dataloaders_every_n_epochs must be 1"),
        ("trainer.use_distributed_sampler=true", "trainer.use_distributed_sampler must be false"),
    ],
)
def test_the_trainer_flags_the_round_relies_on_are_refused_when_changed(override, named, tmp_path):
    """Each epoch runs a fresh round (reload every epoch) and shards its own rollouts (no distributed
    sampler): a run with either flag changed stops at once with a message naming the key."""
    parts = build(compose_train(["trainer.max_epochs=1", override, *FAST], tmp_path))
    try:
        with pytest.raises(ConfigError, match=named):
            parts.trainer.fit(parts.module, datamodule=parts.datamodule)
    finally:
        parts.close()
