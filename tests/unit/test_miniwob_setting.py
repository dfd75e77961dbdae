"""conf/setting/miniwob.yaml and the shipped MiniWoB++ warm start fit together (no browser needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steprl.envs.miniwob.catalog import CATALOG_BY_NAME, split_seeds
from steprl.envs.miniwob.commands import SCREEN_SIZE
from steprl.envs.miniwob.expert import EXPERT_TASKS
from steprl.policy.tiny import POLICY_META
from tests.train_config import compose_train


@pytest.mark.parametrize("experiment,algo", [("miniwob_step", "step"), ("miniwob_tgrpo", "t_grpo"), ("miniwob_gigpo", "gigpo")])
def test_miniwob_experiments_use_the_miniwob_warm_start(experiment, algo):
    cfg = compose_train([f"+experiment={experiment}"])
    assert cfg.env.name == "miniwob" and cfg.algo.name == algo
    assert Path(cfg.policy.pretrained) == Path(cfg.paths.root_dir) / "assets" / "policies" / "tiny-miniwob"
    assert cfg.rollout.pool.num_workers == 4 and cfg.trainer.max_epochs == 12


def test_setting_has_at_least_eight_graded_task_types_the_expert_solves():
    cfg = compose_train(["+experiment=miniwob_step"])
    tasks = list(cfg.env.tasks)
    assert len(tasks) >= 8 and len(set(tasks)) == len(tasks)
    assert set(tasks) <= set(EXPERT_TASKS)  # the warm start needs demonstrations of every type
    assert len({CATALOG_BY_NAME[t].difficulty for t in tasks}) >= 3  # graded, not all one level


def test_new_instances_are_disjoint_from_the_training_and_demonstrated_instances():
    cfg = compose_train(["+experiment=miniwob_step"])
    args = (cfg.env.seeds_per_task, cfg.env.test_seeds_per_task, cfg.env.task_seed, cfg.env.first_test_seed)
    train, test = split_seeds("train", *args), split_seeds("test", *args)
    assert train == list(range(4)) and test == list(range(12, 18))


def test_shipped_warm_start_is_small_and_sees_the_miniwob_screen():
    cfg = compose_train(["+experiment=miniwob_step"])
    directory = Path(cfg.policy.pretrained)
    meta = json.loads((directory / POLICY_META).read_text())
    assert tuple(meta["image_size"]) == SCREEN_SIZE  # 160x210: the MiniWoB++ task area
    assert tuple(meta["model_image_size"]) == (168, 224) and meta["coords"] == "absolute"
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size < 8_000_000, f"the shipped warm start should stay a few MB, it is {size / 1e6:.1f} MB"
    report = json.loads((directory / "report.json").read_text())
    assert report["args"]["tasks"] == list(cfg.env.tasks)  # demonstrated exactly the setting's task types
    demonstrated = int(report["args"]["seeds_per_task"])  # the warm start was shown seeds 0 .. demonstrated-1
    assert cfg.env.seeds_per_task <= demonstrated <= cfg.env.first_test_seed  # RL trains on some; no new seed was shown
