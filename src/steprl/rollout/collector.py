"""Collect trajectories on many environments at once, batching the policy across them.

Every scheduled copy of a task becomes a trajectory: reset on a free worker, then repeat
(policy acts -> env steps) until the env reports `done`, then `evaluate()`. Env operations run in
the pool while the policy generates in the collector's thread. The collector never steps all envs
in lock-step: whenever some envs wait for an action it gathers them (up to `max_batch`, waiting at
most `gather_wait_s` for more to arrive) and answers them with one `policy.generate` call, so a slow
env delays only itself.

Robustness: an env op that raises, hangs past its timeout or kills its worker gets the worker
restarted and the trajectory retried from reset (up to `max_retries` times), after which the
trajectory is recorded with `env_error` set (excluded from success rates and training). A worker
that fails `max_consecutive_failures` times in a row is quarantined: stopped, no new work.

Stopping: `request_stop()` (called from a signal handler, e.g. on SIGTERM) makes the running (or the
next) `collect` raise `CollectionStopped` within about a second, after closing the pool. Env ops
that run longer than `wait_log_s` are named in the log (which worker, which op, for how long, and
its timeout), so a slow or hung environment does not look like a frozen program.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from steprl.errors import RolloutError
from steprl.algo.context import step_dialogue
from steprl.rollout.pools import EnvPool, OpResult
from steprl.types import Action, Dialogue, Generation, Observation, StepResult, Task, Trajectory, Turn

log = logging.getLogger(__name__)


class CollectionStopped(RolloutError):
    """`collect` was asked to stop (`RolloutCollector.request_stop`, e.g. on SIGTERM)."""


class Policy(Protocol):
    """What the collector needs from a policy (VLMPolicy and the test fakes implement it)."""

    def generate(
        self, dialogues: list[Dialogue], *, greedy: bool = False, temperature: float | None = None
    ) -> list[Generation]: ...




@dataclass
class CollectStats:
    """What one `collect` call did and where its time went.

    `env_time_s` sums the time spent inside env calls over all workers (they run in parallel, so it
    can exceed `wall_time_s`); `generate_time_s` is the collector's time inside `policy.generate`.
    """

    trajectories: int = 0
    env_errors: int = 0  # trajectories given up after max_retries
    env_steps: int = 0  # env steps executed, retried attempts included
    generate_calls: int = 0
    generated: int = 0  # responses generated (= sum of batch sizes)
    max_batch_size: int = 0
    retries: int = 0  # trajectories restarted from reset after an env failure
    restarts: int = 0  # worker restarts
    timeouts: int = 0  # env ops that ran past their timeout
    quarantined: int = 0  # workers out of service at the end of the call
    failures: int = 0  # env ops that failed (raised, timed out or lost their worker)
    wall_time_s: float = 0.0  # the whole call, worker start-up included
    start_time_s: float = 0.0  # starting the pool's workers (first call, or after a close)
    env_time_s: float = 0.0
    generate_time_s: float = 0.0

    @property
    def mean_batch_size(self) -> float:
        return self.generated / self.generate_calls if self.generate_calls else 0.0

    @property
    def env_wait_s(self) -> float:
        """Collection wall time not spent generating: waiting for envs (worker start-up and the
        collector's own bookkeeping included). With `generate_time_s` it adds up to `wall_time_s`."""
        return max(0.0, self.wall_time_s - self.generate_time_s)

    @property
    def env_steps_per_s(self) -> float:
        return self.env_steps / self.wall_time_s if self.wall_time_s > 0 else 0.0


@dataclass
class _Slot:
    """One scheduled copy of a task, through its attempts."""

    index: int
    task: Task
    copy_index: int
    attempts: int = 0  # resets submitted so far
    worker: int | None = None
    phase: str = "pending"  # pending | reset | act | step | evaluate
    turns: list[Turn] = field(default_factory=list)
    observation: Observation | None = None
    next_turn: Turn | None = None  # generated, being executed
    ready_since: float = 0.0
    reset_time_s: float = 0.0
    submitted_at: float = 0.0  # time.monotonic() when its current env op was submitted


class RolloutCollector:
    """Runs scheduled task copies on an `EnvPool` with a policy; see the module docstring.

    Settings: `max_batch` caps one generate call; `history_responses` / `history_screenshots` are the
    policy context's history window (k, m; docs/algorithm.md §3); `success_threshold` turns a score into
    success; timeouts are per env op; `gather_wait_s` is how long the first env waiting for an action
    may wait for others to join its batch; `max_turns` is a guard against an env that never ends an
    episode; `progress(done, total)` is called whenever a trajectory finishes.
    """

    def __init__(
        self,
        pool: EnvPool,
        *,
        max_batch: int = 32,
        history_responses: int = 3,
        history_screenshots: int = 0,
        success_threshold: float = 1.0,
        max_retries: int = 2,
        max_consecutive_failures: int = 3,
        reset_timeout_s: float = 600.0,
        step_timeout_s: float = 120.0,
        evaluate_timeout_s: float = 300.0,
        gather_wait_s: float = 0.01,
        max_turns: int = 100,
        progress: Callable[[int, int], Any] | None = None,
        wait_log_s: float = 30.0,
    ):
        _require(max_batch >= 1, f"max_batch must be >= 1, got {max_batch}")
        _require(history_responses >= 0, f"history_responses must be >= 0, got {history_responses}")
        _require(history_screenshots >= 0, f"history_screenshots must be >= 0, got {history_screenshots}")
        _require(max_retries >= 0, f"max_retries must be >= 0, got {max_retries}")
        _require(max_consecutive_failures >= 1, "max_consecutive_failures must be >= 1")
        for name, value in [("reset", reset_timeout_s), ("step", step_timeout_s), ("evaluate", evaluate_timeout_s)]:
            _require(value > 0, f"{name}_timeout_s must be > 0, got {value}")
        _require(gather_wait_s >= 0, f"gather_wait_s must be >= 0, got {gather_wait_s}")
        _require(max_turns >= 1, f"max_turns must be >= 1, got {max_turns}")
        _require(wait_log_s > 0, f"wait_log_s must be > 0, got {wait_log_s}")
        self.pool = pool
        self.max_batch = int(max_batch)
        self.history_responses = int(history_responses)
        self.history_screenshots = int(history_screenshots)
        self.success_threshold = float(success_threshold)
        self.max_retries = int(max_retries)
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.timeouts = {"reset": reset_timeout_s, "step": step_timeout_s, "evaluate": evaluate_timeout_s}
        self.gather_wait_s = float(gather_wait_s)
        self.max_turns = int(max_turns)
        self.progress = progress
        self.wait_log_s = float(wait_log_s)
        self._stop = threading.Event()
        self.last_stats: CollectStats | None = None
        self.quarantined: set[int] = set()
        self._failures = [0] * pool.num_workers  # consecutive failures per worker

    # ---- public ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Make the running (or next) `collect` stop promptly. Safe to call from a signal handler:
        it only sets a flag, which the collection loop checks at least once a second."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def collect(
        self,
        tasks_per_copy: Sequence[Task],
        policy: Policy,
        *,
        greedy: bool = False,
        temperature: float | None = None,
        progress: Callable[[int, int], Any] | None = None,
    ) -> list[Trajectory]:
        """One trajectory per entry of `tasks_per_copy`, in the same order. `greedy=True` (and/or a
        `temperature`) is passed to `policy.generate`: evaluation runs through here too.
        `progress` overrides the collector's progress callback for this call."""
        began = time.perf_counter()
        if self.stop_requested:
            raise CollectionStopped("collection was asked to stop before it started")
        run = _Run(self, list(tasks_per_copy), policy, greedy, temperature, progress or self.progress)
        if not self.pool.started:  # a fresh (or re-opened) pool: every worker gets a clean record
            self.quarantined.clear()
            self._failures = [0] * self.pool.num_workers
            started = time.perf_counter()
            self.pool.start()
            run.stats.start_time_s = time.perf_counter() - started
        try:
            run.loop()
        except BaseException:
            # In-flight ops would answer into the next call: end every worker (envs closed) and
            # let the next collect start afresh. Covers KeyboardInterrupt and policy errors.
            self.pool.close()
            raise
        finally:
            run.stats.wall_time_s = time.perf_counter() - began
            run.stats.quarantined = len(self.quarantined)
            self.last_stats = run.stats
        return run.trajectories  # type: ignore[return-value]

    def close(self) -> None:
        """Close the pool (every env and worker)."""
        self.pool.close()

    def __enter__(self) -> RolloutCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Run:
    """The state of one `collect` call: the slots and where each one is."""

    def __init__(
        self,
        collector: RolloutCollector,
        tasks: list[Task],
        policy: Policy,
        greedy: bool,
        temperature: float | None,
        progress: Callable[[int, int], Any] | None,
    ):
        self.c = collector
        self.progress = progress
        self.pool = collector.pool
        self.policy = policy
        self.greedy = greedy
        self.temperature = temperature
        self.stats = CollectStats()
        self.slots = [_Slot(i, task, copy) for i, (task, copy) in enumerate(zip(tasks, copy_indices(tasks)))]
        self.trajectories: list[Trajectory | None] = [None] * len(self.slots)
        self.pending: deque[_Slot] = deque(self.slots)  # waiting for a worker
        self.awaiting: deque[_Slot] = deque()  # have an observation, wait for an action (FIFO)
        self.bound: dict[int, _Slot] = {}  # worker -> the slot whose episode it runs
        self.done = 0
        self.last_wait_log = time.monotonic()

    # ---- main loop ---------------------------------------------------------------------------

    def loop(self) -> None:
        total = len(self.slots)
        while self.done < total:
            if self.c.stop_requested:
                raise CollectionStopped(f"collection stopped on request with {total - self.done} of {total} trajectories to go")
            self.dispatch()
            if not self.awaiting and not self.pool.in_flight():
                raise RolloutError(
                    f"no healthy env worker left: all {self.pool.num_workers} workers are quarantined "
                    f"after {self.c.max_consecutive_failures} consecutive failures each, with "
                    f"{total - self.done} trajectories to go. The environment keeps failing: see the "
                    "errors logged above, fix the env (VMs, emulators, settings), then restart."
                )
            for result in self.pool.poll(self.wait_s()):
                self.handle(result)
            self.log_long_waits()
            if self.awaiting and self.batch_is_ready():
                self.act()

    def dispatch(self) -> None:
        """Start the next pending slots on idle, unbound, healthy workers."""
        for worker in self.pool.idle_workers():
            if not self.pending:
                return
            if worker in self.bound or worker in self.c.quarantined:
                continue
            slot = self.pending.popleft()
            slot.worker, slot.phase, slot.attempts = worker, "reset", slot.attempts + 1
            slot.turns, slot.observation, slot.next_turn = [], None, None
            self.bound[worker] = slot
            self.submit(slot, "reset", slot.task)

    def submit(self, slot: _Slot, op: str, arg: Any = None) -> None:
        """Start `op` for `slot` on its worker (timed, so long waits can be named in the log)."""
        slot.submitted_at = time.monotonic()
        self.pool.submit(slot.worker, op, arg, timeout_s=self.c.timeouts[op])  # type: ignore[arg-type]

    def log_long_waits(self) -> None:
        """Every `wait_log_s`, say which env ops have been running longer than that (the oldest
        first): a user watching a quiet console then knows what the run is waiting for."""
        now = time.monotonic()
        if now - self.last_wait_log < self.c.wait_log_s:
            return
        self.last_wait_log = now
        slow = sorted(
            (s for s in self.bound.values() if s.phase in ("reset", "step", "evaluate") and now - s.submitted_at >= self.c.wait_log_s),
            key=lambda s: s.submitted_at,
        )
        if not slow:
            return
        oldest = slow[0]
        log.info(
            "waiting for %d env op(s) running over %g s; the oldest: worker %s, %s of task %s for %.0f s "
            "(timeout %g s; %d of %d trajectories done)",
            len(slow), self.c.wait_log_s, oldest.worker, oldest.phase, oldest.task.id, now - oldest.submitted_at,
            self.c.timeouts[oldest.phase], self.done, len(self.slots),
        )

    def wait_s(self) -> float:
        """How long to wait for env results: no longer than the oldest waiting env's gather window."""
        if not self.awaiting:  # anything that arrives (or times out) wakes the poll earlier; a second at
            return min(1.0, self.c.wait_log_s)  # most, so a stop request and long waits are seen in time
        if len(self.awaiting) >= self.c.max_batch:
            return 0.0
        return max(0.0, self.awaiting[0].ready_since + self.c.gather_wait_s - time.monotonic())

    def batch_is_ready(self) -> bool:
        """Generate now if the batch is full, nothing else can join it, or the window has passed."""
        coming = sum(slot.phase in ("reset", "step") for slot in self.bound.values())
        return (
            len(self.awaiting) >= self.c.max_batch
            or coming == 0
            or time.monotonic() - self.awaiting[0].ready_since >= self.c.gather_wait_s
        )

    # ---- policy ------------------------------------------------------------------------------

    def act(self) -> None:
        """One batched generate call for the envs waiting longest, then submit their steps."""
        batch = [self.awaiting.popleft() for _ in range(min(self.c.max_batch, len(self.awaiting)))]
        dialogues = [self.context(slot) for slot in batch]
        began = time.perf_counter()
        generations = self.policy.generate(dialogues, greedy=self.greedy, temperature=self.temperature)
        spent = time.perf_counter() - began
        if len(generations) != len(batch):
            raise RolloutError(
                f"policy.generate returned {len(generations)} generations for {len(batch)} dialogues; "
                "it must return exactly one per dialogue, in order."
            )
        self.stats.generate_calls += 1
        self.stats.generated += len(batch)
        self.stats.max_batch_size = max(self.stats.max_batch_size, len(batch))
        self.stats.generate_time_s += spent
        for slot, generation in zip(batch, generations):
            slot.next_turn = Turn(
                observation=slot.observation,  # type: ignore[arg-type]
                response=generation.text,
                response_ids=tuple(generation.token_ids),
                response_logprobs=tuple(generation.logprobs),
                generate_time_s=spent / len(batch),  # each response's share of the batched call
            )
            slot.phase = "step"
            self.submit(slot, "step", generation.text)

    def context(self, slot: _Slot) -> Dialogue:
        """The policy's context: instruction, the last k responses (m with screenshots), the screen."""
        obs = slot.observation
        assert obs is not None
        return step_dialogue(
            slot.task.instruction,
            slot.turns,
            obs.screenshot,
            num_responses=self.c.history_responses,
            num_screenshots=self.c.history_screenshots,
            a11y=obs.a11y,
        )

    # ---- env results -------------------------------------------------------------------------

    def handle(self, result: OpResult) -> None:
        if result.op != "start":
            self.stats.env_time_s += result.elapsed_s
        if not result.ok:
            self.on_failure(result)
            return
        if result.op == "start":
            return  # a restarted worker is ready; dispatch will use it
        self.c._failures[result.worker] = 0
        slot = self.bound[result.worker]
        if result.op == "reset":
            slot.observation, slot.reset_time_s = result.value, result.elapsed_s
            self.wait_for_action(slot)
        elif result.op == "step":
            self.on_step(slot, result.value, result.elapsed_s)
        else:  # evaluate
            self.finish(slot, score=float(result.value), evaluate_time_s=result.elapsed_s)

    def on_step(self, slot: _Slot, step: StepResult, elapsed_s: float) -> None:
        turn = slot.next_turn
        assert turn is not None
        action = step.info.get("action")
        turn.action = action if isinstance(action, Action) else None
        turn.action_valid = bool(step.info.get("action_valid", True))
        turn.error = step.info.get("error")
        turn.env_time_s = elapsed_s
        slot.turns.append(turn)
        slot.next_turn = None
        slot.observation = step.observation
        self.stats.env_steps += 1
        budget = slot.task.max_steps
        if step.done or (budget is not None and len(slot.turns) >= budget):
            slot.phase = "evaluate"
            self.submit(slot, "evaluate")
        elif len(slot.turns) >= self.c.max_turns:
            # Not an env hiccup that a retry fixes: the env breaks the GUIEnv contract.
            self.finish(
                slot,
                env_error=f"the environment did not end the episode within max_turns={self.c.max_turns} "
                "steps (GUIEnv.step must return done=True once the step budget is spent)",
            )
        else:
            self.wait_for_action(slot)

    def wait_for_action(self, slot: _Slot) -> None:
        slot.phase, slot.ready_since = "act", time.monotonic()
        self.awaiting.append(slot)

    def on_failure(self, result: OpResult) -> None:
        """Restart (or quarantine) the worker; retry its trajectory from reset or give it up."""
        worker = result.worker
        self.stats.timeouts += result.timed_out
        self.stats.failures += 1
        self.c._failures[worker] += 1
        failures = self.c._failures[worker]
        log.warning("env worker %d: %s", worker, result.error)
        if result.detail:
            log.debug("env worker %d traceback:\n%s", worker, result.detail)
        if failures >= self.c.max_consecutive_failures:
            log.error(
                "env worker %d quarantined after %d consecutive failures (last: %s); it gets no more work",
                worker,
                failures,
                result.error,
            )
            self.pool.stop(worker)
            self.c.quarantined.add(worker)
        else:
            self.pool.restart(worker)
            self.stats.restarts += 1
        slot = self.bound.get(worker)
        if slot is None:  # a failed start: no trajectory involved
            return
        if slot.attempts > self.c.max_retries:
            self.finish(slot, env_error=f"{result.error} (gave up after {slot.attempts} attempts)")
            return
        del self.bound[worker]
        slot.worker, slot.phase = None, "pending"
        self.stats.retries += 1
        self.pending.appendleft(slot)  # retries go first: they have waited longest

    def finish(
        self, slot: _Slot, *, score: float = 0.0, evaluate_time_s: float = 0.0, env_error: str | None = None
    ) -> None:
        """Record the trajectory of a slot and free its worker."""
        trajectory = Trajectory(
            task=slot.task,
            turns=slot.turns,
            score=score,
            success=env_error is None and score >= self.c.success_threshold,
            env_error=env_error,
            final_observation=slot.observation,
            copy_index=slot.copy_index,
            attempts=slot.attempts,
            reset_time_s=slot.reset_time_s,
            evaluate_time_s=evaluate_time_s,
        )
        self.trajectories[slot.index] = trajectory
        if slot.worker is not None and self.bound.get(slot.worker) is slot:
            del self.bound[slot.worker]
        slot.phase, slot.worker = "done", None
        self.done += 1
        self.stats.trajectories += 1
        self.stats.env_errors += env_error is not None
        if self.progress is not None:
            self.progress(self.done, len(self.slots))


def copy_indices(tasks: Sequence[Task]) -> list[int]:
    """For each scheduled task, how many earlier entries have the same task id (its copy index)."""
    seen: dict[str, int] = {}
    indices = []
    for task in tasks:
        indices.append(seen.get(task.id, 0))
        seen[task.id] = indices[-1] + 1
    return indices


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"RolloutCollector: {message}.")
