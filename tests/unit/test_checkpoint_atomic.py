"""Checkpoints are whole on disk at every moment; a damaged one is named with an earlier one to use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from steprl.errors import CheckpointError
from steprl.lightning.checkpoint import (
    PARTIAL_PREFIX,
    AtomicCheckpointIO,
    SafeModelCheckpoint,
    check_checkpoint,
    load_checkpoint,
    write_atomically,
)

ROOT = Path(__file__).resolve().parents[2]


class Explodes:
    """Pickling this raises: a save that fails half-way through writing."""

    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_a_save_replaces_the_file_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "last.ckpt"
    write_atomically({"epoch": 1}, target)
    write_atomically({"epoch": 2}, target)
    assert torch.load(target, weights_only=False) == {"epoch": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_save_that_fails_half_way_keeps_the_old_file_whole(tmp_path):
    target = tmp_path / "last.ckpt"
    write_atomically({"epoch": 1, "weights": torch.zeros(1000)}, target)
    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically({"epoch": 2, "weights": torch.ones(1000), "z": Explodes()}, target)
    assert torch.load(target, weights_only=False)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# A process that writes last.ckpt once, then starts a second save that stalls once all its bytes are
# written but before they are flushed and renamed (the long copy of a 7B checkpoint) until killed.
KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    import steprl.lightning.checkpoint as checkpoint

    io = checkpoint.AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.zeros(1 << 20)}, sys.argv[1])

    def stalled_fsync(fd):
        Path(sys.argv[2]).write_text("writing")
        time.sleep(600)

    checkpoint.os.fsync = stalled_fsync
    io.save_checkpoint({"epoch": 2, "weights": torch.ones(1 << 20)}, sys.argv[1])
    """
)


def test_sigkill_during_a_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path):
    run_dir, tmpdir = tmp_path / "checkpoints", tmp_path / "tmpdir"
    run_dir.mkdir()
    tmpdir.mkdir()
    target, marker = run_dir / "last.ckpt", tmp_path / "writing"
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the writer exited early"
            assert time.monotonic() < deadline, "the second save never started"
            time.sleep(0.05)
        partials = list(run_dir.glob(f"{PARTIAL_PREFIX}*"))
        assert partials and partials[0].stat().st_size > 0  # the kill lands in the middle of a write
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    checkpoint = load_checkpoint(target)
    assert checkpoint["epoch"] == 1 and torch.equal(checkpoint["weights"], torch.zeros(1 << 20))
    assert list(tmpdir.iterdir()) == []  # nothing was written through $TMPDIR
    write_atomically({"epoch": 3}, target)  # the next save clears the killed writer's partial file
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.ckpt"]


def test_a_truncated_checkpoint_names_itself_and_an_earlier_one(tmp_path):
    earlier, last = tmp_path / "epoch_003.ckpt", tmp_path / "last.ckpt"
    write_atomically({"epoch": 3}, earlier)
    write_atomically({"epoch": 4, "weights": torch.zeros(10_000)}, last)
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    for load in (check_checkpoint, load_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(CheckpointError) as error:
            load(last)
        assert str(last) in str(error.value) and f"ckpt_path={earlier}" in str(error.value)


def test_a_damaged_checkpoint_without_an_earlier_one_says_to_start_again(tmp_path):
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(CheckpointError, match="start the run again"):
        load_checkpoint(last)


def test_checkpoint_files_are_named_epoch_001_not_epoch_epoch_001():
    callback = SafeModelCheckpoint(dirpath="/tmp/unused", filename="epoch_{epoch:03d}")
    assert callback.format_checkpoint_name({"epoch": torch.tensor(1)}).endswith("/epoch_001.ckpt")


def test_the_checkpoint_callback_installs_atomic_writes(tmp_path):
    import lightning.pytorch as pl

    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         callbacks=[SafeModelCheckpoint(dirpath=tmp_path)])
    trainer.checkpoint_callback.setup(trainer, None, "fit")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
