"""The pool interface on the in-process pool and on worker threads: states, results, timeouts,
restarts, clean shutdown and the errors a user can cause."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from steprl.envs import MissingDependencyError, register
from steprl.rollout import EnvPoolError, InProcessPool, LocalPool
from tests.doubles import UP, CounterEnv  # "counter" is a registered env
from steprl.types import Observation, StepResult, Task

TASK = Task(id="t", family="counter", instruction="Set the counter to 1, then finish.", config={"goal": 1})


class Recorder:
    """A factory that keeps every env it builds (to check that they get closed)."""

    def __init__(self) -> None:
        self.envs: list[CounterEnv] = []

    def __call__(self, **kwargs) -> CounterEnv:
        self.envs.append(CounterEnv(**kwargs))
        self.envs[-1].seed = kwargs.get("fault_seed")  # type: ignore[attr-defined]
        return self.envs[-1]


def run_op(pool, worker, op, arg=None, timeout_s=5.0):
    pool.submit(worker, op, arg, timeout_s=timeout_s)
    results = []
    while not results:
        results = pool.poll(1.0)
    (result,) = results
    return result


@pytest.mark.parametrize("make_pool", [lambda: InProcessPool("counter"), lambda: LocalPool("counter", num_workers=1, backend="thread")])
def test_reset_step_evaluate_round_trip(make_pool) -> None:
    with make_pool() as pool:
        assert pool.idle_workers() == [0] and pool.in_flight() == 0
        reset = run_op(pool, 0, "reset", TASK)
        assert reset.ok and reset.op == "reset" and isinstance(reset.value, Observation)
        step = run_op(pool, 0, "step", UP)
        assert isinstance(step.value, StepResult) and step.value.info["action_valid"]
        evaluate = run_op(pool, 0, "evaluate")
        assert evaluate.value == 0.0  # counter at 1 but not finished
        assert pool.state(0) == "idle"


def test_busy_worker_and_unknown_op_are_refused() -> None:
    with InProcessPool("counter") as pool:
        with pytest.raises(ValueError, match="unknown env operation"):
            pool.submit(0, "render", timeout_s=1.0)
        pool.submit(0, "reset", TASK, timeout_s=1.0)
        with pytest.raises(EnvPoolError, match="not idle"):
            pool.submit(0, "step", UP, timeout_s=1.0)


def test_in_process_op_over_its_timeout_is_reported_as_timed_out() -> None:
    with InProcessPool("counter", {"reset_latency_s": 0.05}) as pool:
        result = run_op(pool, 0, "reset", TASK, timeout_s=0.01)
        assert result.timed_out and not result.ok and "over its 0.01 s timeout" in result.error
        assert pool.state(0) == "failed"


def test_env_exception_becomes_a_failed_result_with_traceback() -> None:
    with InProcessPool("counter", {"fault_reset_raise_prob": 1.0}) as pool:
        result = run_op(pool, 0, "reset", TASK)
    assert not result.ok and not result.timed_out
    assert result.error == "reset raised RuntimeError: injected reset fault"
    assert "Traceback" in result.detail


def test_restart_replaces_the_env_and_close_closes_every_env() -> None:
    recorder = Recorder()
    register("recorded", recorder)
    pool = InProcessPool("recorded", num_workers=2)
    pool.start()
    assert len(recorder.envs) == 2
    pool.restart(1)
    assert pool.state(1) == "starting" and recorder.envs[1].closed
    (started,) = pool.poll(0.0)
    assert started.op == "start" and started.ok and pool.state(1) == "idle"
    pool.close()
    pool.close()  # idempotent
    assert len(recorder.envs) == 3 and all(env.closed for env in recorder.envs)
    assert [pool.state(i) for i in range(2)] == ["stopped", "stopped"]
    pool.start()  # a closed pool can be opened again
    assert pool.idle_workers() == [0, 1]
    pool.close()


def test_stop_takes_a_worker_out_of_service() -> None:
    with InProcessPool("counter", num_workers=2) as pool:
        pool.stop(0)
        assert pool.idle_workers() == [1] and pool.state(0) == "stopped"


def test_unknown_env_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="Unknown environment 'nope'.*counter"):
        InProcessPool("nope")


@pytest.mark.parametrize("backend", ["inprocess", "thread"])
def test_env_that_cannot_be_built_is_one_clear_error(backend: str) -> None:
    kwargs = {"fail_to_build": True}
    pool = InProcessPool("counter", kwargs) if backend == "inprocess" else LocalPool("counter", kwargs, 2, backend="thread")
    with pytest.raises(EnvPoolError, match=r"could not start environment 'counter'.*fail_to_build=True.*Check the env"):
        pool.start()
    assert not pool.started


def test_unpicklable_env_factory_in_a_process_pool_says_what_to_do() -> None:
    register("lambda-env", lambda **kwargs: CounterEnv(**kwargs))
    pool = LocalPool("lambda-env", num_workers=1)
    with pytest.raises(EnvPoolError, match="'module:attribute' path"):
        pool.start()
    assert not pool.started


@pytest.mark.parametrize(
    "kwargs, message",
    [({"backend": "gpu"}, "backend"), ({"start_method": "fork"}, "unsafe"), ({"num_workers": 0}, "num_workers")],
)
def test_local_pool_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalPool("counter", **kwargs)


def test_thread_workers_end_on_close() -> None:
    with LocalPool("counter", num_workers=3, backend="thread") as pool:
        run_op(pool, 0, "reset", TASK)
        threads = list(pool._handles)  # noqa: SLF001 - test introspection
    # close() asks each idle thread to stop and joins it
    assert len(threads) == 3 and not any(t.is_alive() for t in threads)


def test_ray_pool_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    from steprl.rollout.ray_pool import RayPool

    with pytest.raises(MissingDependencyError, match=r"pip install 'steprl\[distributed\]'"):
        RayPool("counter")


def test_seed_kwarg_gives_every_worker_incarnation_its_own_seed() -> None:
    recorder = Recorder()
    register("recorded", recorder)
    with InProcessPool("recorded", {"fault_seed": 7}, num_workers=4, seed_kwarg="fault_seed") as pool:
        pool.restart(2)
        # base + num_workers * restarts + worker: workers 0..3 get 7..10; worker 2 restarted once
        # gets 7 + 4*1 + 2 = 13
        assert [env.seed for env in recorder.envs] == [7, 8, 9, 10, 13]
        assert pool.worker_kwargs(3) == {"fault_seed": 10}
    assert InProcessPool("recorded", {"fault_seed": 7}).worker_kwargs(0) == {"fault_seed": 7}


def test_an_unpicklable_env_result_is_a_failed_op_not_a_dead_worker() -> None:
    def factory(**kwargs):
        env = CounterEnv(**kwargs)
        original = env.step

        def step(text):
            result = original(text)
            result.info["callback"] = lambda: None  # a lambda cannot be pickled
            return result

        env.step = step  # type: ignore[method-assign]
        return env

    register("unpicklable", factory)
    with LocalPool("unpicklable", num_workers=1, backend="thread") as pool:
        run_op(pool, 0, "reset", TASK)
        result = run_op(pool, 0, "step", UP)
        assert not result.ok and "must be picklable" in result.error
        worker_thread = pool._handles[0]  # noqa: SLF001 - test introspection
        assert pool.state(0) == "failed" and worker_thread.is_alive()  # failed op, live worker


# -- issue 15 item 3: every env a worker built is closed, also when the worker is stopped or killed --


class ClosingEnv(CounterEnv):
    """A CounterEnv whose reset can hang and whose close leaves a mark on disk (what matters for
    a VM: the close ran in the worker, even though the worker was stopped)."""

    def __init__(self, marker: str, reset_s: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.marker, self.reset_s = marker, reset_s

    def reset(self, task):
        time.sleep(self.reset_s)  # a VM boot that hangs
        return super().reset(task)

    def close(self) -> None:
        with open(self.marker, "a") as out:
            out.write(f"closed by {os.getpid()}\n")


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_an_op_past_its_limit_is_stopped_by_the_worker_which_closes_its_env(tmp_path: Path) -> None:
    register("closing", ClosingEnv)
    marker = tmp_path / "closed.txt"
    with LocalPool("closing", {"marker": str(marker), "reset_s": 60.0}, num_workers=1, close_timeout_s=20.0) as pool:
        began = time.monotonic()
        result = run_op(pool, 0, "reset", TASK, timeout_s=1.0)
        took = time.monotonic() - began
        assert result.timed_out and not result.ok and "ran past its 1 s limit" in result.error
        # the worker's own limit fired (about 1 s), long before the pool's kill (1 s + 20 s grace)
        assert took < 10.0, took
        assert marker.read_text().count("closed") == 1  # the env (the VM) was closed by the worker
        pool.restart(0)  # the collector's next move: a fresh env
        while pool.state(0) == "starting":
            pool.poll(1.0)
        assert pool.state(0) == "idle"
    assert marker.read_text().count("closed") == 2  # the new env is closed at the end of the run too


def test_killing_a_busy_worker_still_closes_its_env(tmp_path: Path) -> None:
    """restart / stop / close of a worker in the middle of an op (a timeout the worker could not
    stop, Ctrl-C in the trainer, quarantine): SIGTERM, the env is closed, then the worker ends."""
    register("closing", ClosingEnv)
    marker = tmp_path / "closed.txt"
    pool = LocalPool("closing", {"marker": str(marker), "reset_s": 60.0}, num_workers=2, close_timeout_s=20.0)
    pool.start()
    try:
        pool.submit(0, "reset", TASK, timeout_s=120.0)
        pool.submit(1, "reset", TASK, timeout_s=120.0)
        time.sleep(0.5)  # both workers are inside their hanging reset
        pool.stop(0)
        assert marker.read_text().count("closed") == 1
    finally:
        pool.close()  # worker 1 is still busy: it is ended the same way
    assert marker.read_text().count("closed") == 2


def test_a_worker_whose_parent_dies_closes_its_env(tmp_path: Path) -> None:
    """The trainer is SIGKILLed mid-reset: its worker notices, closes the env, exits."""
    marker = tmp_path / "closed.txt"
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path[:0] = {sys.path!r}\n"
        "from steprl.envs import register\n"
        "from steprl.rollout import LocalPool\n"
        "from test_rollout_pools import ClosingEnv, TASK\n"
        "if __name__ == '__main__':\n"
        "    register('closing', ClosingEnv)\n"
        f"    pool = LocalPool('closing', {{'marker': {str(marker)!r}, 'reset_s': 60.0}}, num_workers=1)\n"
        "    pool.start()\n"
        "    pool.submit(0, 'reset', TASK, timeout_s=120.0)\n"
        "    time.sleep(1.0)\n"
        "    os._exit(9)  # no clean-up at all, like SIGKILL\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 9, out.stderr
    assert _wait_for(marker.exists, 30.0), "the orphaned worker never closed its env"
    assert marker.read_text().count("closed") == 1
