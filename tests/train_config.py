"""Composing the training config in tests, the way `python train.py ...` does (no network, no W&B)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from steprl.hydra_resolvers import register

register()

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

#: A tiny, fast, deterministic run (conf/debug/fast.yaml): in-process envs, 2 tasks x 4 rollouts, CSV logs.
FAST = ["debug=fast"]


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """train.yaml with `overrides`; `paths.output_dir` set to `output_dir` (no Hydra run dir here)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir) if output_dir else "/tmp/steprl-unused"
        cfg.paths.root_dir = str(ROOT)
    return cfg


def algo_spec(name: str = "step", **overrides):
    """conf/algo/<name>.yaml as an AlgorithmSpec (the one definition of each algorithm), with overrides."""
    from omegaconf import OmegaConf

    from steprl.algo.spec import AlgorithmSpec

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"algo={name}"])
    return AlgorithmSpec.from_config({**OmegaConf.to_container(cfg.algo, resolve=True), **overrides})
