"""Collecting trajectories: `RolloutCollector` over an env worker pool.

Pools: `InProcessPool` (synchronous, deterministic), `LocalPool` (worker processes or threads, the
default) and `RayPool` (Ray actors, optional dependency). Names are loaded on first use: a worker
process imports `steprl.rollout.workers`, which runs this file, and must not pull in the collector
(and with it torch, through `steprl.algo`) just to step an environment.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CollectStats": "steprl.rollout.collector",
    "Policy": "steprl.rollout.collector",
    "RolloutCollector": "steprl.rollout.collector",
    "RolloutError": "steprl.rollout.collector",
    "copy_indices": "steprl.rollout.collector",
    "EnvPool": "steprl.rollout.pools",
    "EnvPoolError": "steprl.rollout.pools",
    "InProcessPool": "steprl.rollout.pools",
    "LocalPool": "steprl.rollout.pools",
    "OpResult": "steprl.rollout.pools",
    "RayPool": "steprl.rollout.ray_pool",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'steprl.rollout' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
