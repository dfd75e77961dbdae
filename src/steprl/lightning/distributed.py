"""The few collective operations the datamodule needs, as no-ops when not distributed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank (picklable objects)."""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_max(values: Sequence[int]) -> list[int]:
    """Element-wise maximum of an integer list over ranks (the lists must have equal length)."""
    _, world = rank_and_world()
    if world == 1:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.long)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.cpu().tolist()


def shard_groups(copies: Sequence[str], world: int) -> list[list[int]]:
    """Split the round's copies over ranks, keeping all copies of one task on one rank.

    Group advantages (T-GRPO, GiGPO, SR-Adv's success filter) are computed over the rollouts of one
    task in the round; keeping a task's copies together makes each rank's advantages exact without
    exchanging trajectories. Groups are assigned largest first to the rank with the fewest copies
    (ties: lowest rank), which is deterministic and balanced to within one group.
    Returns, per rank, the indices into `copies`.
    """
    groups: dict[str, list[int]] = {}
    for index, task_id in enumerate(copies):
        groups.setdefault(task_id, []).append(index)
    shards: list[list[int]] = [[] for _ in range(world)]
    for task_id in sorted(groups, key=lambda t: (-len(groups[t]), t)):
        target = min(range(world), key=lambda r: (len(shards[r]), r))
        shards[target].extend(groups[task_id])
    return [sorted(shard) for shard in shards]
