"""The few collective operations an RL round needs, behind one small object.

`RoundRunner` gets a communication object instead of calling torch.distributed itself, so the whole
round runs in a unit test with `LocalComm` (one process) or with a fake of several ranks.
`TorchComm` asks torch.distributed at each call (Lightning initialises the process group only once
fitting starts, after the runner is built) and acts as a single process when it is not initialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class Comm(Protocol):
    """Rank, world size, all-gather of picklable objects, element-wise max of integer lists."""

    @property
    def rank(self) -> int: ...

    @property
    def world(self) -> int: ...

    def gather(self, obj: T) -> list[T]: ...

    def all_reduce_max(self, values: Sequence[int]) -> list[int]: ...


class LocalComm:
    """One process: rank 0 of 1; gathering returns `[obj]`, reductions return their input."""

    rank = 0
    world = 1

    def gather(self, obj: T) -> list[T]:
        return [obj]

    def all_reduce_max(self, values: Sequence[int]) -> list[int]:
        return list(values)


class TorchComm:
    """torch.distributed when initialised (DDP, FSDP, DeepSpeed), else a single process."""

    @staticmethod
    def _active() -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def rank(self) -> int:
        return dist.get_rank() if self._active() else 0

    @property
    def world(self) -> int:
        return dist.get_world_size() if self._active() else 1

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered

    def all_reduce_max(self, values: Sequence[int]) -> list[int]:
        """Element-wise maximum over ranks (the lists must have equal length on every rank)."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.long)
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.cpu().tolist()
