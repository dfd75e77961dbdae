"""Simulated latency sleeps at least as configured; injected faults raise / hang as configured."""

from __future__ import annotations

import time

import pytest

from steprl.envs.minidesk import InjectedFault, MiniDeskEnv


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def test_step_and_reset_latency_lower_bounds():
    env = MiniDeskEnv(step_latency_s=0.05, reset_latency_s=0.08, latency_jitter=0.5, fault_seed=1)
    task = env.tasks("train")[0]
    for _ in range(3):
        # jitter 0.5: each sleep lasts at least (1 - 0.5) of its base
        _, reset_s = timed(env.reset, task)
        _, step_s = timed(env.step, "Action: wait()")
        assert reset_s >= 0.08 * 0.5
        assert step_s >= 0.05 * 0.5


def test_latency_without_jitter():
    env = MiniDeskEnv(step_latency_s=0.04)
    env.reset(env.tasks("train")[0])
    _, step_s = timed(env.step, "Action: wait()")
    assert step_s >= 0.04


def test_step_fault_raises_and_leaves_the_state_unchanged():
    env = MiniDeskEnv(fault_step_raise_prob=1.0)
    env.reset(env.tasks("train")[0])
    before = env.snapshot().state
    with pytest.raises(InjectedFault, match="injected fault"):
        env.step(env.expert_response())
    assert isinstance(InjectedFault("x"), RuntimeError)
    assert env.state == before


def test_reset_fault_raises():
    env = MiniDeskEnv(fault_reset_raise_prob=1.0)
    with pytest.raises(RuntimeError, match="reset failed"):
        env.reset(env.tasks("train")[0])


def test_hangs_sleep_fault_hang_s_then_go_on():
    env = MiniDeskEnv(fault_step_hang_prob=1.0, fault_reset_hang_prob=1.0, fault_hang_s=0.1)
    _, reset_s = timed(env.reset, env.tasks("train")[0])
    result, step_s = timed(env.step, env.expert_response())
    assert reset_s >= 0.1 and step_s >= 0.1
    assert result.info["action_valid"]


def test_fault_draws_are_seeded():
    def pattern(seed: int) -> list[bool]:
        env = MiniDeskEnv(fault_step_raise_prob=0.5, fault_seed=seed)
        env.reset(env.tasks("train")[0])
        raised = []
        for _ in range(40):
            try:
                env.step("Action: wait()")
                raised.append(False)
            except InjectedFault:
                raised.append(True)
            if env.state.done:
                env.reset(env.tasks("train")[0])
        return raised

    first = pattern(3)
    assert first == pattern(3)
    assert 5 < sum(first) < 35  # about half
    assert first != pattern(4)
