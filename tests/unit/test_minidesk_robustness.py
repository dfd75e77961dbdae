"""Malformed and adversarial model output through env.step: invalid, reported, never raised, never run."""

from __future__ import annotations

import os
import random

import pytest

import steprl

from steprl.actions import ActionParseError, parse_response
from steprl.envs import GUIEnv, make
from steprl.envs.minidesk import MiniDeskEnv

try:  # pytest's default "prepend" import mode puts this folder on sys.path
    from test_actions import adversarial_corpus
except ImportError:  # tests/ and tests/unit/ are packages
    from tests.unit.test_actions import adversarial_corpus


@pytest.fixture()
def env() -> MiniDeskEnv:
    return MiniDeskEnv(max_steps=1000)


def test_minidesk_implements_the_protocol():
    env = make("minidesk", num_train_tasks=13, num_test_tasks=13)
    assert isinstance(env, GUIEnv) and isinstance(env, MiniDeskEnv)
    assert env.supports_snapshot is True


def test_adversarial_corpus_through_step(env, tmp_path, monkeypatch):
    sentinel = tmp_path / "sentinel"
    # (builtins.eval/exec are not patched here: rendering imports modules lazily, which uses exec)
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    task = next(t for t in env.tasks("train") if t.family == "fill_form")
    start = env.reset(task).state_hash
    corpus = adversarial_corpus(str(sentinel))
    for count, text in enumerate(corpus, start=1):
        with pytest.raises(ActionParseError):
            parse_response(text, env.screen_size)
        result = env.step(text)
        assert result.info["action_valid"] is False, text[:80]
        assert isinstance(result.info["error"], str) and result.info["error"], text[:80]
        assert result.info["action"] is None
        assert result.info["steps"] == count  # an invalid action costs a turn
        assert result.observation.state_hash == start  # and changes nothing
        assert not result.done
    assert not sentinel.exists()
    assert calls == []
    assert not hasattr(steprl, "PWNED")


def test_actions_outside_minidesk_action_space_are_invalid(env):
    env.reset(env.tasks("train")[0])
    for text in ("Action: press(key='enter')", "Action: open_app(app_name='Mail')", "Action: press_home()",
                 "Action: long_press(start_box='(10,10)')", "Action: hover(start_box='(10,10)')"):  # fmt: skip
        result = env.step(text)
        assert result.info["action_valid"] is False
        assert "not in MiniDesk's action space" in result.info["error"]
        assert result.info["action"] is not None  # it parsed; MiniDesk just does not execute it


def test_invalid_actions_use_up_the_budget():
    env = MiniDeskEnv(max_steps=3)
    env.reset(env.tasks("train")[0])
    results = [env.step("Action: nonsense") for _ in range(3)]
    assert [r.done for r in results] == [False, False, True]
    assert env.state.ended_by == "budget" and env.evaluate() == 0.0


def test_random_text_never_raises_from_step(env):
    rng = random.Random(99)
    task = next(t for t in env.tasks("train") if t.family == "desktop_chain")
    env.reset(task)
    pieces = ["Action: ", "click(", "type(", "drag(", "scroll(", "hotkey(", "start_box=", "end_box=", "'(",
              "100", ",", "200", ")'", ")", "content='", "key='ctrl s'", "direction='down'", "\n", "x", "'"]  # fmt: skip
    for _ in range(1500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        result = env.step(text)
        assert isinstance(result.info["action_valid"], bool)
        if result.done:
            env.reset(task)


def test_step_before_reset_is_a_clear_error():
    with pytest.raises(RuntimeError, match="call reset"):
        MiniDeskEnv().step("Action: wait()")
    with pytest.raises(RuntimeError, match="call reset"):
        MiniDeskEnv().evaluate()


def test_reset_rejects_foreign_tasks(env):
    from steprl.types import Task

    with pytest.raises(ValueError, match="not a MiniDesk task"):
        env.reset(Task(id="osworld/abc", family="chrome", instruction="do it"))


def test_bad_constructor_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="observation must be one of"):
        MiniDeskEnv(observation="pixels")
    with pytest.raises(ValueError, match="coords must be one of"):
        MiniDeskEnv(coords="relative")
    with pytest.raises(ValueError, match="max_steps"):
        MiniDeskEnv(max_steps=0)
    with pytest.raises(ValueError, match="screen_size"):
        MiniDeskEnv(screen_size=(50, 20))
    with pytest.raises(ValueError, match="probability"):
        MiniDeskEnv(fault_step_raise_prob=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        MiniDeskEnv(step_latency_s=-1)
