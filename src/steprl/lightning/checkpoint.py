"""Checkpoints that are whole on disk at every moment, and clear messages for damaged ones.

Lightning's own save writes through a temporary file in $TMPDIR and then moves it; when $TMPDIR is
another file system than the run directory the move is a copy, and a kill during it (OOM killer,
a scheduler's kill after its grace period) leaves a truncated `last.ckpt` and a stray temp file.
`AtomicCheckpointIO` writes the new checkpoint beside its target (same directory, so the same file
system), flushes it to disk, then renames it over the target: a reader sees the old file or the
new one, never half of one. `describe_damage` turns a failed load into a message that names the
damaged file and an earlier checkpoint that loads.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from steprl.errors import CheckpointError

#: Prefix of the file a checkpoint is written to before it is renamed into place.
PARTIAL_PREFIX = ".partial-"


def partial_path(target: Path) -> Path:
    """Where `target` is written before the rename: same directory, hidden, one per process."""
    return target.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{target.name}")


def write_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save beside `path`, fsync, then os.replace onto `path` (and fsync the directory so the
    rename itself survives a power loss). On any error the partial file is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent)
    partial = partial_path(target)
    try:
        with open(partial, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def remove_stale_partials(directory: Path) -> list[Path]:
    """Delete partial files left by processes that were killed mid-write (their pid is gone)."""
    removed = []
    for partial in directory.glob(f"{PARTIAL_PREFIX}*"):
        pid = partial.name[len(PARTIAL_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def looks_whole(path: str | os.PathLike) -> bool:
    """A cheap test (no unpickling): torch checkpoints are zip archives whose index sits at the end
    of the file, so a truncated file has no readable index."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def earlier_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The other checkpoints in the same folder that look whole, newest first."""
    target = Path(path)
    others = [
        p for p in target.parent.glob("*.ckpt")
        if p.resolve() != target.resolve() and not p.name.startswith(PARTIAL_PREFIX) and looks_whole(p)
    ]
    return sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)


def describe_damage(path: str | os.PathLike, error: BaseException) -> str:
    """What to tell a user whose checkpoint does not load: the file, why, and what to use instead."""
    others = earlier_checkpoints(path)
    advice = (
        f"Resume from an earlier checkpoint instead: ckpt_path={others[0]}"
        if others
        else f"No other whole checkpoint is in {Path(path).parent}; start the run again without ckpt_path."
    )
    return f"The checkpoint {path} is damaged and cannot be loaded ({type(error).__name__}: {error}). {advice}"


def check_checkpoint(path: str | os.PathLike) -> None:
    """Raise CheckpointError (naming the file and an earlier one) if `path` is truncated."""
    if not looks_whole(path):
        raise CheckpointError(describe_damage(path, EOFError("the file is truncated or not a torch checkpoint")))


def load_checkpoint(path: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """torch.load on CPU; a damaged file gives a CheckpointError that says which file and what to do."""
    check_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, **kwargs)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
        raise CheckpointError(describe_damage(path, error)) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with `write_atomically` for saves and clear messages for loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options.")
        write_atomically(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        check_checkpoint(path)
        try:
            return super().load_checkpoint(
                path,
                map_location=map_location or (lambda storage, loc: storage),
                weights_only=False if weights_only is None else weights_only,  # steprl's own checkpoints hold RNG states
            )
        except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
            raise CheckpointError(describe_damage(path, error)) from None


class SafeModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose files are written by `AtomicCheckpointIO` (installed on the Trainer's
    strategy at setup, unless it was given another checkpoint IO; strategies that write checkpoint
    folders of their own, DeepSpeed and sharded FSDP, do not use it), and named plainly:
    `epoch_001.ckpt`, not `epoch_epoch=001.ckpt`."""

    def __init__(self, *args: Any, auto_insert_metric_name: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, auto_insert_metric_name=auto_insert_metric_name, **kwargs)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        install_atomic_io(trainer)
        super().setup(trainer, pl_module, stage)


def install_atomic_io(trainer: Any) -> bool:
    """Use AtomicCheckpointIO for `trainer` if it uses Lightning's plain torch IO; True if it does."""
    strategy = trainer.strategy
    current = getattr(strategy, "_checkpoint_io", None)
    if current is None or type(current) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    return isinstance(strategy.checkpoint_io, AtomicCheckpointIO)
