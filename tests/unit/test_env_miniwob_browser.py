"""MiniWoBEnv on real MiniWoB++ pages in a headless Chromium (marked `browser`).

Skipped, with the reason, where the miniwob/selenium packages or Debian's chromium and
chromium-driver are missing. One browser serves the whole module (a few seconds in all).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from steprl.envs import make
from steprl.envs.miniwob.expert import elements_from_dom, expert_action

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _missing() -> str | None:
    for package in ("miniwob", "selenium"):
        if importlib.util.find_spec(package) is None:
            return f"the '{package}' package is not installed (pip install miniwob selenium)"
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            return f"{binary} is missing (apt-get install -y chromium chromium-driver)"
    return None


pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]
TASKS = ["click-test", "click-test-2", "enter-text", "login-user"]


@pytest.fixture(scope="module")
def env():
    # model_image_size = the 160x210 screen: model coordinates are screen pixels in these tests
    environment = make("miniwob", tasks=TASKS, seeds_per_task=2, test_seeds_per_task=1, episode_time_limit_s=60,
                       wait_s=0.05, coords="absolute", model_image_size=[160, 210])  # fmt: skip
    yield environment
    environment.close()


def task_of(env, name: str, split: str = "train", index: int = 0):
    return [t for t in env.tasks(split) if t.family == name][index]


def run_expert(env, task, limit: int = 12):
    obs = env.reset(task)
    hashes, results = [obs.state_hash], []
    for _ in range(limit):
        result = env.step(env.expert_response(thought="expert"))
        results.append(result)
        hashes.append(result.observation.state_hash)
        if result.done:
            break
    return results, hashes


def test_config_file_builds_without_starting_a_browser():
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "env" / "miniwob.yaml"), resolve=True)
    assert cfg.pop("name") == "miniwob"
    environment = make("miniwob", **cfg)
    assert environment.browser_running is False and environment.screen_size == (160, 210)
    environment.close()


def test_tasks_are_page_seeds_with_the_pages_utterances(env):
    train, test = env.tasks("train"), env.tasks("test")
    assert [t.id for t in train[:2]] == ["click-test/0", "click-test/1"] and len(train) == 8
    assert {t.config["seed"] for t in test} == {2} and all(t.split == "test" for t in test)  # seeds 0,1 train; 2 test
    login = task_of(env, "login-user")
    assert login.difficulty == 3 and login.instruction.startswith("Enter the username")
    obs = env.reset(login)
    assert env.page["utterance"] == login.instruction  # the page made the same problem again
    assert obs.screenshot.shape == (210, 160, 3) and obs.screenshot.dtype == np.uint8 and obs.screenshot.any()


def test_click_test_solved_by_the_expert(env):
    task = task_of(env, "click-test")
    results, _ = run_expert(env, task)
    assert len(results) == 1 and results[0].done and results[0].info["ended_by"] == "page"
    assert results[0].info["action_valid"] and env.evaluate() == 1.0


def test_decayed_reward_is_below_the_raw_one(env):
    env.reward = "decayed"
    try:
        run_expert(env, task_of(env, "click-test", index=1))
        assert 0.0 < env.evaluate() < 1.0  # MiniWoB scales the reward by the time left
    finally:
        env.reward = "raw"


def test_multi_step_login_by_the_expert(env):
    task = task_of(env, "login-user")
    results, hashes = run_expert(env, task)
    # click user, type user, click password, type password, click Login
    assert len(results) == 5 and all(r.info["action_valid"] for r in results)
    assert [r.info["action"].type for r in results] == ["click", "type", "click", "type", "click"]
    assert len(set(hashes)) == len(hashes)  # every step changed the page
    assert results[-1].done and env.evaluate() == 1.0


def test_invalid_actions_cost_a_turn_and_leave_the_page_alone(env):
    task = dataclasses.replace(task_of(env, "enter-text"), max_steps=3)
    obs = env.reset(task)
    outside = env.step("Action: click(start_box='(500,20)')")
    assert outside.info["action_valid"] is False and "outside the screen" in outside.info["error"]
    right = env.step("Action: right_single(start_box='(70,80)')")
    assert right.info["action_valid"] is False and "no MiniWoB++ equivalent" in right.info["error"]
    assert right.observation.state_hash == obs.state_hash and env.evaluate() == 0.0  # the page still runs
    last = env.step("garbage")
    assert last.done and last.info["ended_by"] == "budget" and last.info["steps"] == 3


def test_keys_reach_the_page(env):
    env.reset(task_of(env, "enter-text"))
    env.step(env.expert_response())  # focus the text field
    env.step("Action: type(content='abc')")
    field = lambda: next(e for e in env.page["dom_elements"] if e["tag"] == "input_text")["value"]  # noqa: E731
    assert field() == "abc"
    env.step("Action: hotkey(key='ctrl a')")
    env.step("Action: press(key='backspace')")
    assert field() == ""


def test_a_wrong_submission_scores_zero(env):
    task = task_of(env, "click-test-2")
    env.reset(task)
    target = dict(env.page["fields"])["target"]
    other = "TWO" if target == "ONE" else "ONE"
    # the expert, asked for the other button, clicks a visible pixel of it (the buttons may overlap)
    wrong = expert_action("click-test-2", {"target": other}, elements_from_dom(env.page["dom_elements"]))
    result = env.step(f"Action: click(start_box='({wrong.point[0]},{wrong.point[1]})')")
    assert result.done and result.info["ended_by"] == "page"
    assert env.evaluate() == 0.0  # MiniWoB's -1 maps to 0


def test_finished_before_the_page_is_done_scores_zero(env):
    env.reset(task_of(env, "enter-text"))
    result = env.step("Action: finished(content='done')")
    assert result.done and result.info["ended_by"] == "finished" and env.evaluate() == 0.0
