"""The warm-started tiny policy shipped in assets/: it loads through policy.pretrained, answers MiniDesk
observations with parseable UI-TARS text, and has a spread of success rates across task families."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from steprl.actions import parse_response
from steprl.algo.context import step_dialogue
from steprl.envs import make
from steprl.policy.vlm import VLMPolicy
from steprl.rollout import InProcessPool, RolloutCollector
from tests.train_config import ROOT

CHECKPOINT = ROOT / "assets" / "policies" / "tiny-minidesk"


def load_policy() -> tuple[VLMPolicy, dict]:
    policy = VLMPolicy(str(CHECKPOINT), max_new_tokens=32, seed=0)
    env_kwargs = {"screen_size": [448, 280], "coords": policy.coords, "model_image_size": list(policy.model_image_size((448, 280)))}
    return policy, env_kwargs


def test_answers_are_parseable_actions():
    policy, env_kwargs = load_policy()
    env = make("minidesk", **env_kwargs)
    tasks = env.tasks("train")[:16]
    dialogues = [step_dialogue(task.instruction, [], env.reset(task).screenshot) for task in tasks]
    answers = policy.generate(dialogues, greedy=True)
    for answer in answers:
        action = parse_response(answer.text, env.screen_size, policy.coords, tuple(env_kwargs["model_image_size"]))
        assert action.type in {"click", "left_double", "right_single", "drag", "hotkey", "type", "scroll", "wait", "finished", "call_user"}


def test_success_is_spread_across_families():
    """Greedy success per family on the default training split: some families solved, some not
    (the regime STEP is for); the full per-family table of the warm start is in report.json."""
    policy, env_kwargs = load_policy()
    tasks = make("minidesk", **env_kwargs).tasks("train")
    with RolloutCollector(InProcessPool("minidesk", env_kwargs, num_workers=32), max_batch=64) as collector:
        trajectories = collector.collect(tasks, policy, greedy=True)
    per_family: dict[str, list[float]] = defaultdict(list)
    for trajectory in trajectories:
        per_family[trajectory.task.family].append(float(trajectory.success))
    rates = {family: float(np.mean(values)) for family, values in per_family.items()}
    assert 0.2 < float(np.mean([t.success for t in trajectories])) < 0.9
    assert any(rate == 1.0 for rate in rates.values()) and any(rate < 0.5 for rate in rates.values()), rates

    report = json.loads((CHECKPOINT / "report.json").read_text())
    sampled = [row["sampled"] for row in report["table"]["train"].values()]
    assert min(sampled) < 0.2 and max(sampled) > 0.8  # measured when the checkpoint was built
