"""The collector on MiniDesk: fault injection with worker processes (64 trajectories finish, each
valid or flagged, no process left) and seeded determinism with the in-process pool."""

from __future__ import annotations

import multiprocessing as mp

import pytest

pytest.importorskip("steprl.envs.minidesk.env", reason="MiniDesk is not available")

from steprl.envs import make  # noqa: E402
from steprl.rollout import InProcessPool, LocalPool, RolloutCollector  # noqa: E402
from tests.doubles import MINIDESK_ACTIONS, HashPolicy, RandomPolicy  # noqa: E402

TASKS = make("minidesk").tasks("train")[:16]


def test_minidesk_faults_64_trajectories_finish_valid_or_flagged_and_no_worker_survives() -> None:
    # Steps raise (3%), resets hang for 30 s (5%) and are killed by the 0.5 s reset timeout.
    env_kwargs = {
        "max_steps": 5,
        "step_latency_s": 0.002,
        "fault_step_raise_prob": 0.03,
        "fault_reset_hang_prob": 0.05,
        "fault_hang_s": 30.0,
        "fault_seed": 11,
    }
    pool = LocalPool("minidesk", env_kwargs, num_workers=4, seed_kwarg="fault_seed")
    collector = RolloutCollector(
        pool, reset_timeout_s=0.5, step_timeout_s=0.5, evaluate_timeout_s=0.5, max_retries=3, max_consecutive_failures=5
    )
    with collector:
        trajectories = collector.collect(TASKS * 4, HashPolicy(MINIDESK_ACTIONS, seed=1))
        stats = collector.last_stats
    assert len(trajectories) == 64
    assert [t.task.id for t in trajectories] == [t.id for t in TASKS * 4]
    for t in trajectories:
        if t.valid:
            assert 1 <= t.length <= 5 and 0.0 <= t.score <= 1.0 and t.success == (t.score >= 1.0)
            assert t.final_observation is not None and t.final_observation.screenshot.shape == (280, 448, 3)
        else:
            assert t.env_error and not t.success and t.attempts == 4
    assert stats.timeouts > 0 and stats.retries > 0  # hangs and raises happened and were survived
    assert stats.env_errors == sum(not t.valid for t in trajectories)
    assert not pool.started and mp.active_children() == []


def test_minidesk_same_seed_same_trajectories_in_process() -> None:
    def run(seed: int) -> list[tuple]:
        pool = InProcessPool("minidesk", {"max_steps": 4}, num_workers=3)
        with RolloutCollector(pool, max_batch=4) as collector:
            trajectories = collector.collect(TASKS[:8] * 2, RandomPolicy(MINIDESK_ACTIONS, seed=seed))
        return [
            (t.task.id, t.copy_index, t.score, tuple(turn.response for turn in t.turns),
             tuple(turn.observation.state_hash for turn in t.turns), t.final_observation.state_hash)
            for t in trajectories
        ]

    first = run(5)
    assert first == run(5)
    assert first != run(6)
    assert len({responses for _, _, _, responses, _, _ in first}) > 1
