"""Success curves of one run, placed where they were measured.

The x coordinate of every point is the number of RL iterations (epochs = policy updates) done when
the success was measured, and the environment steps spent on training rollouts by then:

- `rollout/success_rate` of epoch e is measured on that epoch's rollouts, by the policy after e
  updates: x = e, env steps = rollout/env_steps_total of epoch e (these rollouts included);
- `eval/*` of epoch e is logged after that epoch's update: x = e + 1, same env steps;
- `eval/initial_*` is measured before training: x = 0, env steps = 0.

The training success curve is `eval/train_success_rate` (every training task, sampled) where the
run logged it, else `rollout/success_rate` (the epoch's rollouts, which SR-Traj tilts towards hard
tasks on purpose, so it understates the policy's success on the whole training set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steprl.analysis.runs import Run

TRAIN_EVAL_KEY = "eval/train_success_rate"
ROLLOUT_KEY = "rollout/success_rate"
HELDOUT_KEY = "eval/success_rate"
INITIAL_PREFIX = "eval/initial_"  # eval/initial_train_success_rate, eval/initial_success_rate
ENV_STEPS_KEY = "rollout/env_steps_total"


@dataclass
class Curve:
    """Values of one metric key against RL iterations and training env steps (same length)."""

    key: str
    iterations: np.ndarray
    env_steps: np.ndarray
    values: np.ndarray


def training_success_key(run: Run) -> str:
    """eval/train_success_rate where the run logged it, else rollout/success_rate."""
    return TRAIN_EVAL_KEY if run.logged(TRAIN_EVAL_KEY) else ROLLOUT_KEY


def _env_steps_at(run: Run, epochs: np.ndarray) -> np.ndarray:
    """rollout/env_steps_total at each epoch (NaN where the run did not log it)."""
    known = dict(zip(*run.series(ENV_STEPS_KEY)))
    return np.array([known.get(int(e), np.nan) for e in epochs], dtype=float)


def curve(run: Run, key: str) -> Curve:
    """The curve of `key` with the placement of the module docstring (an eval key gets its
    eval/initial_* point prepended at x = 0 when the run measured it)."""
    epochs, values = run.series(key)
    env_steps = _env_steps_at(run, epochs)
    if not key.startswith("eval/"):
        return Curve(key, epochs.astype(float), env_steps, values)
    iterations = epochs.astype(float) + 1.0
    initial_key = INITIAL_PREFIX + key.removeprefix("eval/")
    _, initial = run.series(initial_key)
    if len(initial):
        iterations = np.concatenate([[0.0], iterations])
        env_steps = np.concatenate([[0.0], env_steps])
        values = np.concatenate([[initial[0]], values])
    return Curve(key, iterations, env_steps, values)


def training_curve(run: Run) -> Curve:
    """Training success over the run (see `training_success_key`)."""
    return curve(run, training_success_key(run))


def heldout_curve(run: Run) -> Curve:
    """Held-out success (greedy, eval/success_rate); empty when the run never evaluated."""
    return curve(run, HELDOUT_KEY)
