"""Env worker pools: one interface, three transports.

A pool owns `num_workers` workers, each owning one environment built from `(env, env_kwargs)`.
The collector drives it with five calls:

- `submit(worker, op, arg, timeout_s=...)` starts "reset" / "step" / "evaluate" on an idle worker;
- `poll(wait_s)` returns the operations that finished (or failed, or ran past their timeout) since
  the last call, waiting at most `wait_s` seconds for the first one;
- `restart(worker)` replaces a worker that failed (its env is rebuilt; a hung worker is killed);
- `stop(worker)` takes a worker out of service for good (quarantine);
- `close()` closes every env and ends every worker; idempotent, also run at interpreter exit.

Time limits come from one place, the `timeout_s` of each op (the collector's
`reset_timeout_s` / `step_timeout_s` / `evaluate_timeout_s`) and the pool's `start_timeout_s`. A
worker process enforces the op's limit itself and closes its env when it fires; the pool kills the
worker only `close_grace_s` later (`steprl.rollout.workers.pool_deadline_s`). Ending a worker
(restart, stop, close) sends it SIGTERM first, so its env is closed, and kills it only if it has not
exited after `close_timeout_s`: no VM is left running by a timeout, a crash, Ctrl-C or the end of a run.

A worker is "starting" until its env is built (reported by `poll` as an op named "start"),
"idle", "busy" while an op runs, "failed" after an error until it is restarted or stopped, and
"stopped". Implementations:

- `InProcessPool`: runs every op synchronously in the caller, in submission order (tests,
  debugging, determinism). It cannot interrupt a hung op; an op that overran its timeout is reported
  as timed out once it returns.
- `LocalPool`: worker processes (default; spawn/forkserver, a hung op is killed with its process)
  or threads (`backend="thread"`; for envs that wait on I/O, e.g. remote VMs; a hung thread cannot
  be killed, so it is abandoned and its env closed whenever the op returns).
- `RayPool` (`steprl.rollout.ray_pool`): Ray actors, so envs can live on other machines.
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing as mp
import os
import pickle
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from steprl.errors import EnvPoolError
from steprl.envs.base import resolve
from steprl.rollout.workers import CLOSE_GRACE_S, OPS, Reply, WorkerCore, failure, pool_deadline_s, process_main, serve

log = logging.getLogger(__name__)

STARTING, IDLE, BUSY, FAILED, STOPPED = "starting", "idle", "busy", "failed", "stopped"




@dataclass
class OpResult:
    """The outcome of one operation on one worker."""

    worker: int
    op: str  # "start" | "reset" | "step" | "evaluate"
    value: Any = None  # the op's return value (None on failure)
    error: str | None = None  # one line: what went wrong
    elapsed_s: float = 0.0  # time inside the env call (worker-measured) or until the timeout
    timed_out: bool = False
    detail: str = ""  # traceback of an env exception, for the log

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _WorkerState:
    state: str = STOPPED
    op: str = ""
    op_id: int = 0
    timeout_s: float = 0.0
    deadline: float = float("inf")
    submitted: float = 0.0
    restarts: int = 0


class EnvPool(ABC):
    """The interface every pool implements, with the bookkeeping they share (states, op ids,
    deadlines). Subclasses provide the transport: `_launch`, `_send`, `_receive`, `_kill`."""

    def __init__(
        self,
        env: str,
        env_kwargs: dict[str, Any] | None = None,
        num_workers: int = 4,
        *,
        start_timeout_s: float = 600.0,
        seed_kwarg: str | None = None,
    ):
        if int(num_workers) < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}.")
        self.env = env
        self.env_kwargs = dict(env_kwargs or {})
        self.num_workers = int(num_workers)
        self.start_timeout_s = float(start_timeout_s)
        self.seed_kwarg = seed_kwarg
        self._target = resolve(env)  # fails early, with the list of known envs, on a typo
        self._workers = [_WorkerState() for _ in range(self.num_workers)]
        self._next_op_id = 1
        self._started = False
        self._atexit = functools.partial(_close_if_alive, weakref.ref(self))

    # ---- public interface ------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker and wait until each has built its env (idempotent).

        A worker that cannot build its env at first start is a configuration error (wrong env
        kwargs, missing VM image, ...): the pool closes and raises one message saying so.
        """
        if self._started:
            return
        self._started = True
        atexit.register(self._atexit)
        problems = []
        try:
            for worker in range(self.num_workers):
                self._start_worker(worker)
            while any(w.state == STARTING for w in self._workers):
                problems += [r for r in self.poll(1.0) if not r.ok]
        except BaseException:  # a launch error or Ctrl-C: leave nothing running
            self.close()
            raise
        if problems:
            self.close()
            first = problems[0]
            log.error("env worker %d failed to start:\n%s", first.worker, first.detail or first.error)
            raise EnvPoolError(
                f"{len(problems)} of {self.num_workers} env workers could not start environment "
                f"'{self.env}' with kwargs {self.env_kwargs}: {first.error}. Check the env settings "
                "(and, for remote envs, that the machines are reachable)."
            )

    @property
    def started(self) -> bool:
        return self._started

    def state(self, worker: int) -> str:
        return self._workers[worker].state

    def idle_workers(self) -> list[int]:
        """Workers ready for a new op, lowest index first."""
        return [i for i, w in enumerate(self._workers) if w.state == IDLE]

    def in_flight(self) -> int:
        """Number of workers with an op (or a start) under way."""
        return sum(w.state in (BUSY, STARTING) for w in self._workers)

    def submit(self, worker: int, op: str, arg: Any = None, *, timeout_s: float) -> None:
        """Start `op` ("reset" with a Task, "step" with the response text, "evaluate") on an idle
        worker; its result comes back from `poll`."""
        if op not in OPS:
            raise ValueError(f"unknown env operation '{op}' (expected one of {OPS})")
        w = self._workers[worker]
        if w.state != IDLE:
            raise EnvPoolError(f"worker {worker} is {w.state}, not idle: cannot submit '{op}'.")
        op_id = self._new_op(w, op, timeout_s)
        w.state = BUSY
        self._send(worker, op_id, op, arg)

    def poll(self, wait_s: float = 0.0) -> list[OpResult]:
        """Finished, failed and timed-out operations; waits up to `wait_s` for the first one, but
        never past the earliest deadline, so timeouts are reported on time."""
        active = [w for w in self._workers if w.state in (BUSY, STARTING)]
        if not active:
            return []
        deadline = min(w.deadline for w in active)
        wait_s = max(0.0, min(wait_s, deadline - time.monotonic()))
        results = [r for worker, reply in self._receive(wait_s) if (r := self._settle(worker, reply))]
        now = time.monotonic()
        for worker, w in enumerate(self._workers):
            if w.state in (BUSY, STARTING) and now >= w.deadline:
                self._kill(worker)
                w.state = FAILED
                results.append(
                    OpResult(
                        worker,
                        w.op,
                        error=f"{w.op} timed out after {w.timeout_s:g} s (worker killed)",
                        elapsed_s=now - w.submitted,
                        timed_out=True,
                    )
                )
        return results

    def restart(self, worker: int) -> None:
        """Replace a worker (kill it whatever it is doing, build a fresh env); it is "starting" until
        `poll` reports its "start"."""
        if not self._started:
            raise EnvPoolError("the pool is not started (call start() first).")
        if self._workers[worker].state != STOPPED:
            self._kill(worker)
        self._workers[worker].restarts += 1
        self._start_worker(worker)

    def stop(self, worker: int) -> None:
        """Take a worker out of service for good (its env is closed, it gets no more work)."""
        w = self._workers[worker]
        if w.state == IDLE:
            self._shutdown([worker])
        elif w.state != STOPPED:
            self._kill(worker)
        w.state = STOPPED

    def close(self) -> None:
        """Close every env and end every worker (graceful for idle workers, killed otherwise)."""
        if not self._started:
            return
        self._started = False
        idle = [i for i, w in enumerate(self._workers) if w.state == IDLE]
        others = [i for i, w in enumerate(self._workers) if w.state not in (IDLE, STOPPED)]
        try:
            self._kill_many(others)
            self._shutdown(idle)
        finally:
            for w in self._workers:
                w.state = STOPPED
            self._release()
            atexit.unregister(self._atexit)

    def __enter__(self) -> EnvPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- transport (subclasses) --------------------------------------------------------------

    @abstractmethod
    def _launch(self, worker: int, op_id: int) -> None:
        """Start worker `worker`; it must answer `op_id` once its env is built (or failed)."""

    @abstractmethod
    def _send(self, worker: int, op_id: int, op: str, arg: Any) -> None:
        """Hand one request to a started worker (a send failure is answered by a failed Reply);
        the op's limit, for workers that enforce it, is `self._workers[worker].timeout_s`."""

    @abstractmethod
    def _receive(self, wait_s: float) -> list[tuple[int, Reply]]:
        """Replies that arrived, waiting up to `wait_s` for the first. A worker that died answers
        with a failed Reply."""

    @abstractmethod
    def _kill(self, worker: int) -> None:
        """End a worker now, whatever it is doing."""

    def _shutdown(self, workers: list[int]) -> None:
        """End idle workers gracefully (their envs closed). Default: kill."""
        for worker in workers:
            self._kill(worker)

    def _kill_many(self, workers: list[int]) -> None:
        """End busy or failed workers (default: one `_kill` after another)."""
        for worker in workers:
            self._kill(worker)

    def _release(self) -> None:
        """Free pool-wide resources after close (default: nothing)."""

    def worker_kwargs(self, worker: int) -> dict[str, Any]:
        """The env kwargs of a worker's current incarnation.

        With `seed_kwarg` set (e.g. MiniDesk's "fault_seed"), each worker and each of its restarts
        gets a distinct value, base + num_workers·restarts + worker: otherwise every worker, and
        every restart of one, would replay the same random stream (the same faults at the same
        points, so a retried trajectory would fail the same way again).
        """
        if self.seed_kwarg is None:
            return self.env_kwargs
        base = int(self.env_kwargs.get(self.seed_kwarg, 0))
        restarts = self._workers[worker].restarts
        return {**self.env_kwargs, self.seed_kwarg: base + self.num_workers * restarts + worker}

    # ---- shared bookkeeping ------------------------------------------------------------------

    #: True where the workers stop an op at its limit themselves (and close the env): the pool then
    #: kills only after the limit plus `close_grace_s`.
    workers_enforce_timeouts = False
    close_grace_s = CLOSE_GRACE_S

    def _new_op(self, w: _WorkerState, op: str, timeout_s: float) -> int:
        op_id, self._next_op_id = self._next_op_id, self._next_op_id + 1
        w.op, w.op_id, w.timeout_s = op, op_id, float(timeout_s)
        w.submitted = time.monotonic()
        enforced = self.workers_enforce_timeouts and op != "start"
        w.deadline = w.submitted + (pool_deadline_s(timeout_s, self.close_grace_s) if enforced else float(timeout_s))
        return op_id

    def _start_worker(self, worker: int) -> None:
        w = self._workers[worker]
        op_id = self._new_op(w, "start", self.start_timeout_s)
        w.state = STARTING
        try:
            self._launch(worker, op_id)
        except Exception as error:
            w.state = FAILED
            if isinstance(error, EnvPoolError):
                raise
            raise EnvPoolError(f"could not launch env worker {worker} for '{self.env}': {error}") from error

    def _settle(self, worker: int, reply: Reply) -> OpResult | None:
        """Turn a worker's reply into an OpResult and update the worker's state."""
        w = self._workers[worker]
        if w.state not in (BUSY, STARTING) or reply.op_id != w.op_id:
            return None  # an answer to an op the pool already gave up on
        if reply.ok and reply.elapsed_s > w.timeout_s:  # only possible for synchronous pools
            w.state = FAILED
            return OpResult(
                worker,
                w.op,
                error=f"{w.op} took {reply.elapsed_s:.3g} s, over its {w.timeout_s:g} s timeout",
                elapsed_s=reply.elapsed_s,
                timed_out=True,
            )
        w.state = IDLE if reply.ok else FAILED
        if reply.ok:
            return OpResult(worker, w.op, value=reply.value, elapsed_s=reply.elapsed_s)
        timed_out = bool(getattr(reply, "timed_out", False))  # the worker stopped it and closed its env
        return OpResult(worker, w.op, error=reply.value, elapsed_s=reply.elapsed_s, detail=reply.detail, timed_out=timed_out)


def _close_if_alive(pool_ref: weakref.ref) -> None:
    pool = pool_ref()
    if pool is not None:
        pool.close()


# ----------------------------------------------------------------------------------------------
# In-process pool
# ----------------------------------------------------------------------------------------------


class InProcessPool(EnvPool):
    """Every op runs synchronously inside `submit`, in the caller's thread: results come back in
    submission order, so a seeded run is exactly reproducible."""

    def __init__(
        self,
        env: str,
        env_kwargs: dict[str, Any] | None = None,
        num_workers: int = 1,
        *,
        start_timeout_s: float = 600.0,
        seed_kwarg: str | None = None,
    ):
        super().__init__(env, env_kwargs, num_workers, start_timeout_s=start_timeout_s, seed_kwarg=seed_kwarg)
        self._cores: list[WorkerCore | None] = [None] * self.num_workers
        self._replies: deque[tuple[int, Reply]] = deque()

    def _launch(self, worker: int, op_id: int) -> None:
        core = WorkerCore(self._target, self.worker_kwargs(worker))
        self._cores[worker] = core
        self._replies.append((worker, core.start(op_id)))

    def _send(self, worker: int, op_id: int, op: str, arg: Any) -> None:
        # no time limit here: ops run in the caller's thread; one that overran is reported by _settle
        self._replies.append((worker, self._cores[worker].run(op_id, op, arg)))  # type: ignore[union-attr]

    def _receive(self, wait_s: float) -> list[tuple[int, Reply]]:
        replies = list(self._replies)
        self._replies.clear()
        return replies

    def _kill(self, worker: int) -> None:
        core, self._cores[worker] = self._cores[worker], None
        if core is not None:
            core.close()


# ----------------------------------------------------------------------------------------------
# Local pool: worker processes or threads
# ----------------------------------------------------------------------------------------------


class LocalPool(EnvPool):
    """Workers on this machine, each owning one env, talking over pipes.

    `backend="process"` (default): one process per env, started with `start_method` ("spawn" by
    default, or "forkserver"; never "fork": the trainer holds torch threads). A hung op is killed
    with its process. `backend="thread"`: one thread per env in this process, for envs that mostly
    wait on I/O (remote VMs, emulators); a hung thread cannot be killed, so it is abandoned (its env
    is closed when the op finally returns).

    Process workers stop an op at its limit themselves and close their env; the pool's kill comes
    `close_grace_s` later. Ending a process worker is SIGTERM (the worker closes its env), then,
    after `close_timeout_s`, SIGKILL.
    """

    def __init__(
        self,
        env: str,
        env_kwargs: dict[str, Any] | None = None,
        num_workers: int = 4,
        *,
        backend: str = "process",
        start_method: str = "spawn",
        start_timeout_s: float = 600.0,
        close_timeout_s: float = 60.0,
        seed_kwarg: str | None = None,
    ):
        super().__init__(env, env_kwargs, num_workers, start_timeout_s=start_timeout_s, seed_kwarg=seed_kwarg)
        if float(close_timeout_s) < 0:
            raise ValueError(f"close_timeout_s must be >= 0, got {close_timeout_s}.")
        if backend not in ("process", "thread"):
            raise ValueError(f"LocalPool backend must be 'process' or 'thread', got '{backend}'.")
        if backend == "process" and start_method not in ("spawn", "forkserver"):
            raise ValueError(
                f"LocalPool start_method must be 'spawn' or 'forkserver', got '{start_method}' "
                "('fork' is unsafe once torch has started threads)."
            )
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"start method '{start_method}' is not available on this platform.")
        self.backend = backend
        self.start_method = start_method
        self.close_timeout_s = float(close_timeout_s)
        self.workers_enforce_timeouts = backend == "process"  # a worker thread cannot be interrupted
        self.close_grace_s = self.close_timeout_s
        self._ctx = mp.get_context(start_method)
        self._conns: list[Connection | None] = [None] * self.num_workers
        self._handles: list[Any] = [None] * self.num_workers
        self._lost: deque[tuple[int, Reply]] = deque()  # send failures, answered at the next poll

    def _launch(self, worker: int, op_id: int) -> None:
        parent_end, child_end = mp.Pipe(duplex=True)
        args = (child_end, self._target, self.worker_kwargs(worker), op_id)
        if self.backend == "thread":
            handle: Any = threading.Thread(
                target=serve, args=args, name=f"steprl-env-{worker}", daemon=True
            )
            handle.start()
        else:
            handle = self._ctx.Process(
                target=process_main, args=args, name=f"steprl-env-{worker}", daemon=True
            )
            try:
                handle.start()
            except (pickle.PicklingError, AttributeError, TypeError) as error:
                parent_end.close()
                child_end.close()
                raise EnvPoolError(
                    f"cannot send environment '{self.env}' to a worker process ({error}). Register it "
                    "by a 'module:attribute' path importable in the worker, or use backend='thread'."
                ) from error
            child_end.close()  # the child holds its own copy; ours would hide the child's death
        self._conns[worker], self._handles[worker] = parent_end, handle

    def _send(self, worker: int, op_id: int, op: str, arg: Any) -> None:
        limit = self._workers[worker].timeout_s if self.workers_enforce_timeouts else None
        try:
            self._conns[worker].send((op_id, op, arg, limit))  # type: ignore[union-attr]
        except (OSError, ValueError) as error:  # the worker died between two ops
            self._lost.append((worker, failure(op_id, f"sending {op} to the worker", error)))

    def _receive(self, wait_s: float) -> list[tuple[int, Reply]]:
        replies = list(self._lost)
        self._lost.clear()
        by_conn = {
            self._conns[i]: i
            for i, w in enumerate(self._workers)
            if w.state in (BUSY, STARTING) and self._conns[i] is not None
        }
        for conn in wait(list(by_conn), timeout=0.0 if replies else wait_s):
            worker = by_conn[conn]  # type: ignore[index]
            try:
                replies.append((worker, conn.recv()))  # type: ignore[union-attr]
            except (EOFError, OSError):
                replies.append((worker, self._death_reply(worker)))
        return replies

    def _death_reply(self, worker: int) -> Reply:
        handle = self._handles[worker]
        if isinstance(handle, threading.Thread):
            what = "worker thread ended unexpectedly"
        else:
            handle.join(timeout=1.0)
            what = f"worker process died (exit code {handle.exitcode})"
        return Reply(self._workers[worker].op_id, False, what)

    def _kill(self, worker: int) -> None:
        self._kill_many([worker])

    def _kill_many(self, workers: list[int]) -> None:
        """End workers whatever they are doing: SIGTERM to every process (each closes its env),
        wait up to `close_timeout_s` for all of them together, SIGKILL the ones still alive.
        A thread worker sees its closed pipe and exits after its current op (closing its env)."""
        processes = []
        for worker in workers:
            conn, handle = self._conns[worker], self._handles[worker]
            self._conns[worker] = self._handles[worker] = None
            if conn is not None:
                conn.close()
            if handle is not None and not isinstance(handle, threading.Thread):
                if handle.is_alive():
                    handle.terminate()
                processes.append((worker, handle))
        deadline = time.monotonic() + self.close_timeout_s
        for worker, handle in processes:
            handle.join(timeout=max(0.0, deadline - time.monotonic()))
            if handle.is_alive():
                log.warning("env worker %d did not close its env within %g s of SIGTERM; killing it", worker, self.close_timeout_s)
                handle.kill()
                handle.join(timeout=5.0)
            if handle.is_alive():  # pragma: no cover - SIGKILL does not fail on Linux
                log.error("env worker %d (pid %s) did not exit after SIGKILL", worker, handle.pid)
            else:
                handle.close()

    def _shutdown(self, workers: list[int]) -> None:
        """Ask idle workers to close their envs, wait (all in parallel), then kill stragglers."""
        for worker in workers:
            try:
                self._conns[worker].send(None)  # type: ignore[union-attr]
            except (OSError, ValueError, AttributeError):
                pass
        deadline = time.monotonic() + self.close_timeout_s
        for worker in workers:
            handle = self._handles[worker]
            if handle is not None:
                handle.join(timeout=max(0.0, deadline - time.monotonic()))
                if handle.is_alive():
                    log.warning("env worker %d did not close within %g s; killing it", worker, self.close_timeout_s)
            self._kill(worker)
