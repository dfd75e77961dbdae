"""RayPool on a local Ray cluster collects exactly what LocalPool collects for the same seeds, and
survives an actor that dies. Skipped when Ray is not installed (`pip install 'steprl[distributed]'`)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'steprl[distributed]' (or pip install ray)")

from steprl.envs import make, register  # noqa: E402
from steprl.rollout import LocalPool, RolloutCollector  # noqa: E402
from steprl.rollout.ray_pool import RayPool  # noqa: E402
from tests.doubles import COUNTER_ENV, MINIDESK_ACTIONS, CounterEnv, CounterExpert, HashPolicy  # noqa: E402

TASKS = CounterEnv(num_tasks=6).tasks("train") * 2


@pytest.fixture(scope="module")
def ray_cluster():
    register("counter", COUNTER_ENV)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def summary(trajectories) -> list[tuple]:
    return [
        (
            t.task.id,
            t.copy_index,
            t.score,
            t.env_error,
            tuple(turn.response for turn in t.turns),
            tuple(turn.action for turn in t.turns),
            tuple(int(turn.observation.screenshot.sum()) for turn in t.turns),
        )
        for t in trajectories
    ]


def test_ray_pool_collects_the_same_trajectories_as_the_local_pool(ray_cluster) -> None:
    # MiniDesk is deterministic given the task; HashPolicy is a pure function of the dialogue, so
    # the trajectories must match whatever the scheduling (2 actors vs 3 processes, jittered latency).
    pytest.importorskip("steprl.envs.minidesk.env", reason="MiniDesk is not available")
    tasks = make("minidesk").tasks("train")[:10] * 2
    env_kwargs = {"max_steps": 4, "step_latency_s": 0.002, "latency_jitter": 0.5}
    with RolloutCollector(RayPool("minidesk", env_kwargs, num_workers=2)) as collector:
        on_ray = collector.collect(tasks, HashPolicy(MINIDESK_ACTIONS, seed=3))
        assert collector.last_stats.env_errors == 0
    with RolloutCollector(LocalPool("minidesk", env_kwargs, num_workers=3)) as collector:
        local = collector.collect(tasks, HashPolicy(MINIDESK_ACTIONS, seed=3))
    assert summary(on_ray) == summary(local)
    assert len({s[4] for s in summary(local)}) > 1  # the policy really varied its answers
    for a, b in zip(on_ray, local):
        np.testing.assert_array_equal(a.final_observation.screenshot, b.final_observation.screenshot)
    assert ray.is_initialized()  # the pool did not shut down a cluster it did not start
    assert mp.active_children() == []


def test_a_dying_actor_is_replaced_and_its_trajectory_retried(ray_cluster) -> None:
    pool = RayPool("counter", num_workers=2)

    class KillsAnActor(CounterExpert):
        """Kills actor 0 while the batch it just answered is about to be stepped (one death)."""

        def generate(self, dialogues, **kwargs):
            if self.calls == 1:
                ray.kill(pool._actors[0])  # noqa: SLF001 - simulates a machine that goes away
            return super().generate(dialogues, **kwargs)

    with RolloutCollector(pool) as collector:
        trajectories = collector.collect(TASKS[:4], KillsAnActor())
        stats = collector.last_stats
    assert all(t.valid and t.success for t in trajectories)
    assert stats.restarts == 1 and stats.retries == 1
    assert sorted(t.attempts for t in trajectories) == [1, 1, 1, 2]
