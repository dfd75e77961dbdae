"""AndroidWorld task instances and splits: seeds, parameters, step budgets (no emulator needed)."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Any


def instance_seed(seed: int, name: str, index: int) -> int:
    """AndroidWorld's per-instance seed: sha256(f"{seed}_{name}_{index}") mod 2**32."""
    return int(hashlib.sha256(f"{seed}_{name}_{index}".encode()).hexdigest(), 16) % (2**32)


def random_params(task_class: Any, seed: int) -> dict[str, Any]:
    """`generate_random_params()` under `random.seed(seed)` (AndroidWorld's tasks draw from the
    global `random`), with params["seed"] = seed; the caller's random state is restored."""
    saved = random.getstate()
    try:
        random.seed(seed)
        params = dict(task_class.generate_random_params())
    finally:
        random.setstate(saved)
    params["seed"] = seed
    return params


def split_names(names: Sequence[str], test_fraction: float, split_seed: int) -> dict[str, list[str]]:
    """Seeded split of task names: sorted, shuffled with random.Random(split_seed), the first
    round(test_fraction · n) are "test" (e.g. 5 names, 0.2 -> 1 test name, 4 train names)."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    shuffled = sorted(names)
    random.Random(split_seed).shuffle(shuffled)
    n_test = round(test_fraction * len(shuffled))
    return {"test": sorted(shuffled[:n_test]), "train": sorted(shuffled[n_test:])}


def step_budget(complexity: float) -> int:
    """AndroidWorld's step budget: int(10 · complexity) (complexity 1 -> 10 steps)."""
    return max(1, int(10 * complexity))


def difficulty_of(complexity: float) -> int:
    """AndroidWorld complexity -> steprl's 1..5 difficulty (rounded up, capped at 5)."""
    return min(5, max(1, math.ceil(complexity)))
