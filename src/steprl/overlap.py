"""Rounds with the environments and the trainer overlapped (docs/overlap.md).

Synchronous (the default): round t = `collect(t)` then `finish(t)`, then epoch t trains; the trainer
idles while the envs collect, the envs idle while the trainer trains.

Overlapped (`data.overlap=true`): round t's samples are finished in the main thread (the record
update, a collective under DDP, SL-GRPO and old log-probs with the current weights), then `collect(t+1)`
starts in a background thread with a *snapshot* of the policy and runs while epoch t trains. So:

- the schedule and SR-Traj of round t+1 are drawn from the record after `finish(t)`, exactly as in
  synchronous mode (collect(t+1) starts only once finish(t) has updated it);
- the policy lag of a round is the number of rounds of updates between the snapshot that generated
  its rollouts and the weights it is trained from: 0 for a round collected in the foreground, 1 for
  a fresh snapshot, up to `max_lag` when a snapshot is reused (refreshing it costs a copy);
- the rollout log-probs of the snapshot ride in every sample's dialogue (`TrainingSample.
  rollout_logprobs`), so `algo.is_correction=tis` corrects the lag exactly as it corrects
  sampler/trainer mismatch;
- nothing in the background thread is a collective (`RoundRunner.collect` has none);
- a checkpoint holds the runner state from before the in-flight collection started and the
  snapshot's trainable weights, so a resumed run redoes that collection with the same weights and
  seeds (deterministic, the same as the uninterrupted run with a deterministic pool);
- an exception in the background thread is re-raised in the main thread as `RolloutError`, and a
  collection that outlives `timeout_s` fails the run with a message naming `data.overlap_timeout_s`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from steprl.errors import CheckpointError, ConfigError, RolloutError
from steprl.round import Collected, Round, RoundRunner

Progress = Callable[[int, int], Any] | None


# ---------------------------------------------------------------------------------------- snapshots
def trainable_state(policy: Any) -> dict[str, torch.Tensor]:
    """Copies of the tensors training changes (parameters with requires_grad): for a LoRA policy the
    adapter only, which is what a snapshot refresh and a checkpoint need."""
    return {name: p.detach().clone() for name, p in policy.named_parameters() if p.requires_grad}


def load_trainable(policy: Any, state: dict[str, torch.Tensor]) -> None:
    """Write `trainable_state` tensors into `policy` in place (same names and shapes)."""
    params = dict(policy.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise CheckpointError(f"The overlap snapshot names parameters the policy does not have: {missing[:3]}; was the checkpoint written by another policy?")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def snapshot_policy(policy: Any, previous: Any | None = None) -> Any:
    """A copy of `policy` for the background collector, with the weights it has now.

    The first call deep-copies the module (cheap for the tiny CPU policy; for a 7B model with LoRA the
    frozen base is copied once). Later calls refresh `previous` in place with the trainable tensors
    only (the LoRA adapter), so a refresh costs an adapter copy, not a model. Policies whose state is
    not all in parameters (test doubles) get a fresh deep copy each time. A policy with a vLLM engine is
    refused: its engine holds GPU memory and a process that cannot be copied.
    """
    engine = getattr(policy, "engine", None)
    if engine is not None and type(engine).__name__ == "VLLMEngine":
        raise ConfigError("data.overlap=true is not supported with policy.engine=vllm yet: use engine=hf, or data.overlap=false.")
    if previous is not None and getattr(policy, "snapshot_trainable_only", True) and any(p.requires_grad for p in policy.parameters()):
        load_trainable(previous, trainable_state(policy))
        return previous
    return copy.deepcopy(policy)


# ---------------------------------------------------------------------------------------- the thread
class BackgroundCollection:
    """`fn()` in a daemon thread; `result` joins it with a timeout and re-raises what it raised.

    A daemon thread: a run that fails while a collection is in flight still exits.
    """

    def __init__(self, fn: Callable[[], Collected], epoch: int) -> None:
        self.epoch = epoch
        self._value: Collected | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"steprl-collect-{epoch}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Collected]) -> None:
        try:
            self._value = fn()
        except BaseException as error:  # re-raised in the main thread by result()
            self._error = error

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout_s: float | None) -> None:
        """Wait for the thread; a collection still running after `timeout_s` fails the run."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RolloutError(
                f"The background rollout collection of epoch {self.epoch} did not finish within {timeout_s} s "
                "(data.overlap_timeout_s): raise it if rounds are that slow, or check the env pool (docs/overlap.md)."
            )

    def result(self, timeout_s: float | None) -> Collected:
        self.join(timeout_s)
        if self._error is not None:
            raise RolloutError(f"The background rollout collection of epoch {self.epoch} failed: {self._error!r}") from self._error
        assert self._value is not None
        return self._value


# ---------------------------------------------------------------------------------------- the rounds
@dataclass
class _Snapshot:
    policy: Any
    version: int  # the epoch at whose start its weights were taken (rounds of updates it has seen)


class RoundPipeline:
    """Runs the rounds of a `RoundRunner`, synchronously or overlapped (see the module docstring).

    Args:
        runner: the round runner (its state is the checkpointed state).
        overlap: collect round t+1 in the background while round t trains.
        max_lag: the most rounds of updates a snapshot may be behind the weights its samples train
            (>= 1 when overlapped; 1 takes a fresh snapshot every round).
        timeout_s: how long the trainer waits for a background collection before failing (None: forever).
        snapshot: makes/refreshes the collector's copy of the policy (`snapshot_policy`).

    Each round's report gets `policy_lag`, `wait_data_s` (how long the trainer waited for the
    collection) and `env_idle_s` (how long the envs waited between the end of the previous collection
    and the start of this one).
    """

    def __init__(
        self,
        runner: RoundRunner,
        *,
        overlap: bool = False,
        max_lag: int = 1,
        timeout_s: float | None = None,
        snapshot: Callable[[Any, Any | None], Any] = snapshot_policy,
    ) -> None:
        if overlap and max_lag < 1:
            raise ConfigError(f"data.max_lag = {max_lag}; with data.overlap=true it must be >= 1 (overlap=false is lag 0).")
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError(f"data.overlap_timeout_s = {timeout_s}; it must be > 0 (or null: wait forever).")
        self.runner = runner
        self.overlap = bool(overlap)
        self.max_lag = int(max_lag)
        self.timeout_s = timeout_s
        self.snapshot_fn = snapshot
        self._pending: BackgroundCollection | None = None
        self._snapshot: _Snapshot | None = None
        self._saved_state: dict[str, Any] | None = None  # runner state before the in-flight collection
        self._restored: tuple[int, dict[str, torch.Tensor]] | None = None  # (version, weights) from a checkpoint
        self._last_collect_end: float | None = None

    # ------------------------------------------------------------------ rounds
    def round(self, epoch: int, policy: Any, progress: Progress = None, *, collect_next: bool = True) -> Round:
        """Round `epoch`, finished with `policy` in this thread; when overlapped and `collect_next`,
        starts collecting round `epoch + 1` before returning."""
        if not self.overlap:
            return self._synchronous(epoch, policy, progress)
        started = time.perf_counter()
        if self._pending is not None and self._pending.epoch == epoch:
            pending, self._pending = self._pending, None
            collected = pending.result(self.timeout_s)
            collected.report.wait_data_s = time.perf_counter() - started
            collected.report.started_at = started  # the iteration starts when the trainer asks for data
        else:
            self.close()  # a collection for another epoch (never expected) is dropped
            collected = self._collect_now(epoch, policy, progress)
            collected.report.wait_data_s = collected.report.rollout_s
        self._saved_state = None
        round_ = self.runner.finish(collected, policy)
        if self.overlap and collect_next:
            self._start(epoch + 1, policy)
        return round_

    def _synchronous(self, epoch: int, policy: Any, progress: Progress) -> Round:
        """`RoundRunner.run`, as without a pipeline; the trainer waits for the whole collection."""
        round_ = self.runner.run(epoch, policy, progress=progress)
        report = round_.report
        report.wait_data_s = report.rollout_s
        report.env_idle_s = 0.0 if self._last_collect_end is None else max(report.started_at - self._last_collect_end, 0.0)
        self._last_collect_end = report.started_at + report.rollout_s  # (scheduling before the rollout takes microseconds)
        return round_

    def _collect_now(self, epoch: int, policy: Any, progress: Progress) -> Collected:
        """Collect in the foreground: with the live policy (lag 0), or after a resume with the
        snapshot weights the checkpoint holds (the interrupted background collection, redone)."""
        collector_policy, lag = policy, 0
        if self._restored is not None:
            version, weights = self._restored
            self._restored = None
            if 1 <= epoch - version <= self.max_lag:
                copy_ = self.snapshot_fn(policy, None)
                load_trainable(copy_, weights)
                self._snapshot = _Snapshot(copy_, version)
                collector_policy, lag = copy_, epoch - version
        return self._timed_collect(epoch, collector_policy, lag, progress)

    def _timed_collect(self, epoch: int, policy: Any, lag: int, progress: Progress) -> Collected:
        started = time.perf_counter()
        collected = self.runner.collect(epoch, policy, progress)
        if lag > self.max_lag and self.overlap:
            raise RolloutError(f"Round {epoch} was collected {lag} rounds behind, over data.max_lag = {self.max_lag} (a bug).")
        collected.report.policy_lag = lag
        collected.report.env_idle_s = 0.0 if self._last_collect_end is None else max(started - self._last_collect_end, 0.0)
        self._last_collect_end = time.perf_counter()
        return collected

    def _start(self, epoch: int, policy: Any) -> None:
        """Collect round `epoch` in the background with a snapshot at most `max_lag` rounds old: the
        weights now are those round `epoch - 1` trains from, so a snapshot taken now is 1 behind."""
        now = epoch - 1  # the version of the live weights
        if self._snapshot is None or epoch - self._snapshot.version > self.max_lag:
            previous = self._snapshot.policy if self._snapshot is not None else None
            self._snapshot = _Snapshot(self.snapshot_fn(policy, previous), now)
        snapshot = self._snapshot
        self._saved_state = copy.deepcopy(self.runner.state_dict())  # collect() draws from the scheduler
        self._pending = BackgroundCollection(lambda: self._timed_collect(epoch, snapshot.policy, epoch - snapshot.version, None), epoch)

    def wait_idle(self) -> None:
        """Let the in-flight collection finish (the env pool serves one caller at a time: evaluation
        waits for it). Its result, or its error, is kept for the next round."""
        if self._pending is not None:
            self._pending.join(self.timeout_s)

    def close(self) -> None:
        """Drop the in-flight collection after it ends (teardown; its error, if any, is dropped too)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.join(self.timeout_s)
            finally:
                self._saved_state = None

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The runner state at the epoch boundary: from before the in-flight collection (it drew from
        the scheduler), plus the snapshot that collection uses so a resume can redo it."""
        if self._saved_state is None:
            return self.runner.state_dict()
        state = copy.deepcopy(self._saved_state)
        assert self._snapshot is not None
        state["overlap_snapshot"] = {"version": self._snapshot.version, "weights": trainable_state(self._snapshot.policy)}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        self.runner.load_state_dict(state)
        saved = state.get("overlap_snapshot")
        self._restored = (int(saved["version"]), saved["weights"]) if saved and self.overlap else None
        self._snapshot = None
