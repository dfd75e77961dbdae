"""Browser health of MiniWoBEnv on a real headless Chromium (marked `browser`).

A crashed browser must become an error the collector can retry (not a hang), the env must start a
fresh browser on the next reset, and no Chromium process may outlive its env: neither after
close() nor when the process that owns the env is killed with SIGKILL (a hung rollout worker).
Skipped, with the reason, where miniwob/selenium or Debian's chromium/chromium-driver are missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from steprl.envs import make
from steprl.envs.miniwob.env import BrowserFailure
from tests.unit.test_env_miniwob_browser import ROOT, _missing

pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def group_members(group: int) -> list[int]:
    """Pids whose process group is `group` (from /proc; empty when the group is gone)."""
    out = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def wait_until_empty(group: int, timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (members := group_members(group)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return members


def chromium_in(group: int) -> list[int]:
    """Members of `group` that are Chromium processes (not ChromeDriver)."""
    names = []
    for pid in group_members(group):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if "chrom" in comm and "driver" not in comm:
            names.append(pid)
    return names


@pytest.fixture
def env():
    environment = make("miniwob", tasks=["click-test"], seeds_per_task=1, test_seeds_per_task=0, episode_time_limit_s=60,
                       coords="absolute", model_image_size=[160, 210])  # fmt: skip
    yield environment
    environment.close()


def test_browser_runs_in_its_own_process_group_and_close_leaves_nothing(env):
    env.reset(env.tasks("train")[0])
    group = env._gym.instance.browser_group
    assert group is not None and group != os.getpgrp()
    assert chromium_in(group), "Chromium should have joined ChromeDriver's process group"
    env.close()
    assert wait_until_empty(group) == []
    assert not env.browser_running


def test_crashed_browser_is_an_error_then_a_fresh_browser_serves_the_next_reset(env):
    task = env.tasks("train")[0]
    env.reset(task)
    group = env._gym.instance.browser_group
    for pid in chromium_in(group):  # Chromium dies under the env (a crash, the OOM killer, ...)
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(BrowserFailure, match="next reset starts a new one"):
        env.step("Action: click(start_box='(80,105)')")
    assert time.monotonic() - started < 35  # an error within the command timeout, not a hang
    assert wait_until_empty(group) == []  # the broken browser was killed, ChromeDriver included
    assert not env.browser_running
    env.reset(task)  # a fresh browser
    result = env.step(env.expert_response())
    assert result.done and env.evaluate() == 1.0


def test_sigkilled_owner_leaves_no_browser_behind(tmp_path):
    """A rollout worker killed mid-episode (hung op): the reaper kills its browser's group."""
    script = textwrap.dedent(
        """
        import sys, time
        from steprl.envs import make
        env = make("miniwob", tasks=["click-test"], seeds_per_task=1, test_seeds_per_task=0)
        env.reset(env.tasks("train")[0])
        print(env._gym.instance.browser_group, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))  # fmt: skip
    try:
        group = int(owner.stdout.readline())
        assert chromium_in(group)
    finally:
        owner.kill()
        owner.wait()
    assert wait_until_empty(group) == [], "Chromium outlived the process that owned it"
