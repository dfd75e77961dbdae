"""rollout=ray on a machine too small for the pool fails at once, with the CPU arithmetic."""

from __future__ import annotations

import time

import pytest

from steprl.envs import register
from steprl.errors import EnvPoolError
from steprl.rollout.ray_pool import check_capacity
from tests.doubles import COUNTER_ENV

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'steprl[distributed]' (or pip install ray)")


def test_the_message_has_the_arithmetic_and_the_settings_that_fit():
    with pytest.raises(EnvPoolError) as error:
        check_capacity(16, 1.0, {}, {"CPU": 2.0}, autoscaling=False)
    message = str(error.value)
    assert "16 env actors x 1 CPU = 16 CPU" in message and "has 2 CPU" in message
    assert "rollout.pool.num_workers=2" in message and "rollout.pool.num_cpus_per_worker=0.125" in message


def test_custom_resources_are_checked_too():
    with pytest.raises(EnvPoolError, match=r"4 env actors x 1 osworld_vm = 4 osworld_vm.*has 0 osworld_vm"):
        check_capacity(4, 0.5, {"osworld_vm": 1.0}, {"CPU": 8.0}, autoscaling=False)


def test_a_cluster_that_may_grow_only_warns(caplog):
    check_capacity(16, 1.0, {}, {"CPU": 2.0}, autoscaling=True)  # no error: an autoscaler may add nodes
    assert "16 CPU" in caplog.text
    check_capacity(2, 1.0, {}, {"CPU": 2.0}, autoscaling=False)  # fits


def test_a_local_ray_too_small_for_the_pool_fails_fast_instead_of_waiting_the_start_timeout():
    from steprl.rollout.ray_pool import RayPool

    assert not ray.is_initialized()
    register("counter", COUNTER_ENV)
    pool = RayPool("counter", num_workers=3, init_kwargs={"num_cpus": 1, "include_dashboard": False}, start_timeout_s=600)
    began = time.monotonic()
    with pytest.raises(EnvPoolError, match=r"3 env actors x 1 CPU = 3 CPU.*has 1 CPU"):
        pool.start()
    assert time.monotonic() - began < 60  # Ray's own start-up; not the 600 s start timeout
    assert not ray.is_initialized()  # the pool shut down the Ray instance it started
