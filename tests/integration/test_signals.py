"""SIGTERM during a slow rollout stops the run within seconds, keeps a whole checkpoint, prints the
resume command and exits non-zero (143); Ctrl-C prints the resume command too (exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from steprl.lightning.checkpoint import load_checkpoint
from tests.train_config import FAST, ROOT

SLOW_ROLLOUT = [
    "+experiment=minidesk_step", *FAST, "rollout=threads", "rollout.pool.num_workers=4", "env.step_latency_s=0.3",
    "trainer.max_epochs=5", "~callbacks.evaluation",
]


def start_and_signal(run_dir, signum):
    """Start a run, wait for its first checkpoint, signal it a moment into the next epoch's rollout;
    return (exit code, seconds from the signal to the exit, output)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = (run_dir.parent / f"{run_dir.name}.out").open("w+")
    child = subprocess.Popen([sys.executable, "train.py", *SLOW_ROLLOUT, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 480
        while not (run_dir / "checkpoints" / "last.ckpt").exists():
            assert child.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 8 minutes"
            time.sleep(0.2)
        time.sleep(2.0)  # the second epoch's rollout is under way (15 steps x 0.3 s per trajectory)
        assert child.poll() is None
        child.send_signal(signum)
        sent = time.monotonic()
        code = child.wait(timeout=120)
        elapsed = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    log.seek(0)
    return code, elapsed, log.read()


def test_sigterm_during_a_slow_rollout_stops_within_seconds_with_a_whole_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    code, elapsed, output = start_and_signal(run_dir, signal.SIGTERM)
    assert code == 143, output[-3000:]
    assert elapsed < 20, f"took {elapsed:.1f} s to stop"
    assert "SIGTERM received: stopping the rollout" in output
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 0  # the last whole epoch; the interrupted one is redone on resume
    assert f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}" in output and "python train.py" in output
    assert not list((run_dir / "checkpoints").glob(".partial-*"))


@pytest.mark.slow
def test_ctrl_c_prints_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    code, _, output = start_and_signal(run_dir, signal.SIGINT)
    assert code == 130, output[-3000:]
    assert f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}" in output
    load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
