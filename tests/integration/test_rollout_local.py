"""Worker processes under fault injection: collections finish, every trajectory is valid or flagged,
and no worker process outlives its pool (also after Ctrl-C, and after the parent is killed)."""

from __future__ import annotations

import multiprocessing as mp
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from steprl.envs import register
from steprl.rollout import LocalPool, RolloutCollector
from tests.doubles import COUNTER_ENV, CounterEnv, CounterExpert

TASKS = CounterEnv(num_tasks=8).tasks("train")


@pytest.fixture(autouse=True)
def counter_env() -> None:
    register("counter", COUNTER_ENV)


def alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie (Linux /proc; psutil-free)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def worker_pids(pool: LocalPool) -> list[int]:
    return [h.pid for h in pool._handles if h is not None]  # noqa: SLF001 - test introspection


def test_counter_env_faults_64_trajectories_all_valid_or_flagged_no_process_left() -> None:
    # Steps raise, resets hang (killed by the 0.5 s timeout), steps kill their worker process.
    env_kwargs = {
        "step_latency_s": 0.002,
        "fault_step_raise_prob": 0.03,
        "fault_step_die_prob": 0.01,
        "fault_reset_hang_prob": 0.03,
        "fault_hang_s": 30.0,
    }
    pool = LocalPool("counter", env_kwargs, num_workers=4)
    seen_pids: set[int] = set()
    collector = RolloutCollector(
        pool, reset_timeout_s=0.5, step_timeout_s=0.5, evaluate_timeout_s=0.5, max_retries=3,
        max_consecutive_failures=6, progress=lambda done, total: seen_pids.update(worker_pids(pool)),
    )
    with collector:
        trajectories = collector.collect(TASKS * 8, CounterExpert())
        stats = collector.last_stats
    assert len(trajectories) == 64
    for trajectory in trajectories:
        # the expert solves every task: a valid trajectory is a success, anything else is flagged
        assert trajectory.success if trajectory.valid else trajectory.env_error
    assert stats.retries > 0 and stats.restarts > 0  # the faults did happen and were survived
    assert stats.env_errors == sum(not t.valid for t in trajectories)
    assert mp.active_children() == []
    assert not [pid for pid in seen_pids if alive(pid)]


def test_ctrl_c_during_collection_closes_every_worker() -> None:
    class Interrupted(CounterExpert):
        def generate(self, dialogues, **kwargs):
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().generate(dialogues, **kwargs)

    pool = LocalPool("counter", {"step_latency_s": 0.01}, num_workers=3)
    collector = RolloutCollector(pool)
    with pytest.raises(KeyboardInterrupt):
        collector.collect(TASKS, Interrupted())
    assert not pool.started and mp.active_children() == []


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from steprl.envs import register
        from steprl.rollout import LocalPool
        if __name__ == "__main__":
            register("counter", "{COUNTER_ENV}")
            pool = LocalPool("counter", num_workers=2)
            pool.start()
            print(" ".join(str(h.pid) for h in pool._handles), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit
        """
    )
    path = tmp_path / "parent.py"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10.0
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if alive(pid)], "worker processes outlived their parent"


def test_forkserver_workers_collect_too() -> None:
    if "forkserver" not in mp.get_all_start_methods():
        pytest.skip("no forkserver start method on this platform")
    with RolloutCollector(LocalPool("counter", num_workers=2, start_method="forkserver")) as collector:
        trajectories = collector.collect(TASKS[:4], CounterExpert())
    assert all(t.valid and t.success for t in trajectories)
    assert mp.active_children() == []
