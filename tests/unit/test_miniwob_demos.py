"""Expert demonstrations with mistakes on real MiniWoB++ pages (marked `browser`; skipped, with the
reason, where miniwob/selenium or Chromium/ChromeDriver are missing)."""

from __future__ import annotations

import random

import pytest

from steprl.actions import parse_response
from steprl.envs import make
from steprl.envs.miniwob.commands import SCREEN_SIZE
from steprl.envs.miniwob.demos import collect_expert_demonstrations, mistake_response
from tests.unit.test_env_miniwob_browser import _missing

pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


@pytest.fixture(scope="module")
def env():
    environment = make("miniwob", tasks=["click-test", "enter-text"], seeds_per_task=2, test_seeds_per_task=0,
                       episode_time_limit_s=60, max_steps=4, coords="absolute", model_image_size=[168, 224])  # fmt: skip
    yield environment
    environment.close()


def test_clean_demonstrations_follow_the_expert_and_succeed(env):
    demos = collect_expert_demonstrations(env, env.tasks("train"), epsilon=0.0)
    assert [d.trajectory.task.id for d in demos] == ["click-test/0", "click-test/1", "enter-text/0", "enter-text/1"]
    for demo in demos:
        assert demo.trajectory.success and demo.mistakes == 0
        assert [t.response for t in demo.trajectory.turns] == demo.labels
    assert [len(d.labels) for d in demos] == [1, 1, 3, 3]  # click; click field, type, submit


def test_every_step_a_mistake_still_labels_each_state_with_the_expert(env):
    task = [t for t in env.tasks("train") if t.family == "enter-text"][0]
    demo = collect_expert_demonstrations(env, [task], epsilon=1.0, seed=3)[0]
    assert demo.mistakes == len(demo.trajectory.turns) >= 1
    assert all(label != turn.response for label, turn in zip(demo.labels, demo.trajectory.turns))
    assert all("click(" in label or "type(" in label for label in demo.labels)
    again = collect_expert_demonstrations(env, [task], epsilon=1.0, seed=3)[0]
    assert [t.response for t in again.trajectory.turns] == [t.response for t in demo.trajectory.turns]  # seeded


def test_a_mistake_is_a_click_on_the_screen_in_the_policy_frame(env):
    env.reset(env.tasks("train")[0])
    rng = random.Random(0)
    for _ in range(20):
        action = parse_response(mistake_response(env, rng), SCREEN_SIZE, "absolute", (168, 224))
        assert action.type == "click"
        assert 0 <= action.point[0] < SCREEN_SIZE[0] and 0 <= action.point[1] < SCREEN_SIZE[1]
