"""Work on environments that is more than one step, run through the env pool.

Env-verified SL-GRPO rewards (`algo.aug_reward=env`) replay a trajectory up to step t, save the
state s_t, and try each alternative action from it; outcome-judged ones (`algo.aug_reward=outcome`)
bring an env to a continuation's state, one policy step at a time (`continuation_state`). That runs
inside an env worker (the pool's "call" operation), so it gets the pool's timeouts, worker restarts
and retries like any rollout, and never needs an environment of its own in the training process.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steprl.rollout.pools import EnvPool
from steprl.types import Task

log = logging.getLogger(__name__)


def same_next_state_rewards(env: Any, task: Task, prefix: Sequence[str], original: str, alternatives: Sequence[str]) -> list[float]:
    """1 for each alternative whose execution from s_t reaches the same next state as a_t, else 0.

    Replays the responses of turns 0..t−1 (`prefix`) from a reset, snapshots s_t, executes the
    original response y_t to get the target state, then restores s_t before each alternative.
    An invalid alternative gets 0.
    """
    env.reset(task)
    for response in prefix:
        env.step(response)
    state = env.snapshot()
    target = env.step(original).observation.state_hash
    rewards = []
    for text in alternatives:
        env.restore(state)
        result = env.step(text)
        rewards.append(float(bool(result.info.get("action_valid", False)) and result.observation.state_hash == target))
    return rewards


@dataclass
class ContinuationState:
    """Where a continuation stands after `continuation_state`: the observation to act on, or the
    score when the episode is over (ended by the env, the step budget, or the horizon). `resume` is
    the env's snapshot of this state (None when the env cannot snapshot), for the next call."""

    observation: Any
    done: bool
    score: float | None
    env_steps: int
    resume: Any = None


def continuation_state(env: Any, task: Task, responses: Sequence[str], limit: int, resume: Any = None) -> ContinuationState:
    """Outcome-judged SL-GRPO (`algo.aug_reward=outcome`): bring the env to the state after
    `responses` (the trajectory's turns 0..t−1, an alternative, then the policy's continuation so
    far), and evaluate when the episode is over or `limit` responses have been taken (the horizon or
    the step budget).

    With `resume` (the snapshot the previous call returned) the env restores it and takes only the
    last response: one env step per call. Without it, or with an env that cannot snapshot, the env
    resets and replays every response, so a continuation of s steps costs 1 + 2 + … + s steps (plus t
    each) and the env must replay deterministically (as `same_next_state_rewards` also assumes).
    Either way any worker can serve any call, and a failed call is simply retried.
    """
    if resume is not None:
        env.restore(resume)
        todo = list(responses[-1:])
        observation = None
    else:
        observation = env.reset(task)
        todo = list(responses)
    done, steps = False, 0
    for response in todo:
        result = env.step(response)
        observation, done, steps = result.observation, bool(result.done), steps + 1
        if done:
            break
    if done or len(responses) >= limit:
        return ContinuationState(observation=None, done=True, score=float(env.evaluate()), env_steps=steps)
    return ContinuationState(observation=observation, done=False, score=None, env_steps=steps, resume=_snapshot_or_none(env))


def _snapshot_or_none(env: Any) -> Any:
    """The env's snapshot, or None for an env without snapshots (it replays instead)."""
    if not getattr(env, "supports_snapshot", False):
        return None
    try:
        return env.snapshot()
    except NotImplementedError:
        return None


@dataclass
class CallStats:
    """What one `run_calls` did: calls given up after their retries, worker restarts, timeouts."""

    failed: int = 0
    restarts: int = 0
    timeouts: int = 0


def run_calls(
    pool: EnvPool,
    fn: Callable[..., Any],
    args_list: Sequence[tuple[Any, ...]],
    *,
    timeout_s: float,
    max_retries: int = 2,
) -> tuple[list[Any | None], CallStats]:
    """`fn(env, *args)` for every `args` on the pool's workers; results in order, None for a call
    that failed (raised, hung past `timeout_s`, killed its worker) `max_retries` + 1 times.
    A failed worker is restarted before it gets more work."""
    if not pool.started:
        pool.start()
    results: list[Any | None] = [None] * len(args_list)
    attempts = [0] * len(args_list)
    pending = deque(range(len(args_list)))
    running: dict[int, int] = {}  # worker -> call index
    stats = CallStats()
    while pending or running:
        for worker in pool.idle_workers():
            if not pending:
                break
            if worker in running:
                continue
            index = pending.popleft()
            attempts[index] += 1
            running[worker] = index
            pool.submit(worker, "call", (fn, tuple(args_list[index])), timeout_s=timeout_s)
        if not running and pending and not pool.idle_workers() and not pool.in_flight():
            raise RuntimeError("run_calls: no env worker can take work (all stopped); the env keeps failing.")
        for result in pool.poll(1.0):
            if result.op == "start":
                continue
            index = running.pop(result.worker)
            if result.ok:
                results[index] = result.value
                continue
            log.warning("env worker %d: %s", result.worker, result.error)
            stats.timeouts += result.timed_out
            stats.restarts += 1
            pool.restart(result.worker)
            if attempts[index] <= max_retries:
                pending.appendleft(index)
            else:
                stats.failed += 1
    return results, stats
