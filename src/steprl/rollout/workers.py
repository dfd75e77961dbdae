"""What an env worker runs: build one environment, then execute reset / step / evaluate on request.

The same code serves a worker process, a worker thread (both talk over a `multiprocessing` pipe)
and a Ray actor, so every pool sees the same replies. A worker never lets an environment exception
escape: it is turned into a failed reply (with its traceback) and the pool decides what to do.

Every environment a worker built is closed, whatever ends the worker (a VM left running costs
4 GB and 4 cores, or money on a cloud):
- an op past its time limit: a worker in a process's main thread enforces the limit itself
  (SIGALRM), closes the env and answers "timed out", before the pool's own deadline
  (`pool_deadline_s`: the op's limit plus a grace period for the close) would kill it;
- an env that raised: the env stays open for the pool to decide; ending the worker closes it;
- SIGTERM (the pool ending a busy or failed worker, a scheduler, ...): the env is closed, then the
  worker exits; only a worker that has not finished closing after the pool's grace period is killed;
- the parent gone (trainer crashed or killed): the watchdog sends the worker SIGTERM (same path);
- a normal end (the pool's close, Ctrl-C in the trainer): the env is closed.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from steprl.envs.base import EnvTarget, GUIEnv, build

#: Operations a pool can ask a worker to run; "start" is the worker's own first reply. "call" runs
#: `fn(env, *args)` for `arg = (fn, args)` with a module-level (picklable) `fn`: work on the env that is
#: more than one step, such as replaying a trajectory and trying alternatives from a snapshot.
OPS = ("reset", "step", "evaluate", "call")

#: Seconds a worker is given to close its env after its op's time limit (or SIGTERM) before the
#: pool kills it; OSWorld's DesktopEnv.close stops a container or terminates a cloud instance.
CLOSE_GRACE_S = 60.0


def pool_deadline_s(timeout_s: float, close_grace_s: float = CLOSE_GRACE_S) -> float:
    """When the pool kills a worker whose op has a `timeout_s` limit that the worker enforces
    itself: after the limit AND the close, so the worker's own limit always fires first.
    Both come from the one op timeout (rollout.collector.*_timeout_s)."""
    return float(timeout_s) + float(close_grace_s)


class OpTimeout(TimeoutError):
    """An env op ran past its time limit inside the worker (raised by SIGALRM in the op)."""



@dataclass
class Reply:
    """A worker's answer to one request (`op_id` echoes the request so stale answers are dropped)."""

    op_id: int
    ok: bool
    value: Any = None  # the op's return value when ok, else a one-line error message
    elapsed_s: float = 0.0  # time spent inside the environment call, measured by the worker
    detail: str = ""  # the formatted traceback of a failure
    timed_out: bool = False  # the worker stopped the op at its time limit (and closed the env)


def run_op(env: GUIEnv, op: str, arg: Any) -> Any:
    """Execute one environment operation."""
    if op == "reset":
        return env.reset(arg)
    if op == "step":
        return env.step(arg)
    if op == "evaluate":
        return float(env.evaluate())
    if op == "call":
        fn, args = arg
        return fn(env, *args)
    raise ValueError(f"unknown env operation '{op}' (expected one of {OPS})")


def failure(op_id: int, what: str, error: BaseException, elapsed_s: float = 0.0) -> Reply:
    """A failed reply: one line for the trajectory record, the full traceback for the log."""
    message = f"{what} raised {type(error).__name__}: {error}"
    return Reply(op_id, False, message, elapsed_s, "".join(traceback.format_exception(error)))


class WorkerCore:
    """One environment and the code that answers requests for it (no transport)."""

    def __init__(self, target: EnvTarget, kwargs: dict[str, Any]):
        self.target = target
        self.kwargs = kwargs
        self.env: GUIEnv | None = None

    def start(self, op_id: int) -> Reply:
        """Build the environment; the reply tells the pool whether the worker is usable."""
        began = time.perf_counter()
        try:
            self.env = build(self.target, **self.kwargs)
        except Exception as error:  # noqa: BLE001 - reported to the pool, never raised here
            return failure(op_id, "building the environment", error, time.perf_counter() - began)
        return Reply(op_id, True, None, time.perf_counter() - began)

    def run(self, op_id: int, op: str, arg: Any, timeout_s: float | None = None) -> Reply:
        """Run one op. With `timeout_s`, in a main thread, the op is stopped at its limit, the env
        closed (a VM in an unknown state is never reused) and a timed-out reply returned."""
        if self.env is None:
            return Reply(op_id, False, f"{op}: the environment was closed after an earlier failure; restart the worker")
        began = time.perf_counter()
        try:
            with _time_limit(timeout_s, op):
                value = run_op(self.env, op, arg)
        except OpTimeout as error:
            self.close()
            reply = failure(op_id, op, error, time.perf_counter() - began)
            reply.timed_out = True
            return reply
        except Exception as error:  # noqa: BLE001 - an env that raises is the pool's business
            return failure(op_id, op, error, time.perf_counter() - began)
        return Reply(op_id, True, value, time.perf_counter() - began)

    def close(self) -> None:
        """Close the environment; a failing close must not keep the worker from exiting."""
        if self.env is not None:
            env, self.env = self.env, None
            with _sigterm_deferred():  # a SIGTERM now would cut the close short and leave the VM running
                try:
                    env.close()
                except Exception:  # noqa: BLE001
                    traceback.print_exc()  # the worker's stderr: a VM may be left running


class _sigterm_deferred:
    """Hold SIGTERM back (main thread of a process only) until the block ends; it is then
    delivered, so the worker still exits, but after the env is closed."""

    def __enter__(self) -> None:
        self.armed = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
        if self.armed:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def __exit__(self, *exc_info: object) -> None:
        if self.armed:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


class _time_limit:
    """Raise OpTimeout in this thread after `timeout_s` (SIGALRM; main thread only, else no-op:
    a worker thread cannot be interrupted and the pool's deadline is the only limit there)."""

    def __init__(self, timeout_s: float | None, op: str):
        self.timeout_s, self.op = timeout_s, op
        self.armed = (
            timeout_s is not None
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )

    def _expire(self, signum: int, frame: Any) -> None:
        raise OpTimeout(f"{self.op} ran past its {self.timeout_s:g} s limit; the env was closed")

    def __enter__(self) -> None:
        if self.armed:
            self.previous = signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, float(self.timeout_s))  # type: ignore[arg-type]

    def __exit__(self, *exc_info: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
            signal.signal(signal.SIGALRM, self.previous)


def serve(conn: Connection, target: EnvTarget, kwargs: dict[str, Any], start_op_id: int) -> None:
    """Worker loop over a pipe: build the env, then answer (op_id, op, arg) requests until told to
    stop (None) or until the pool goes away (closed pipe)."""
    core = WorkerCore(target, kwargs)
    try:
        reply = core.start(start_op_id)
        conn.send(reply)
        if not reply.ok:
            return
        while True:
            request = conn.recv()
            if request is None:
                return
            op_id, op, arg, timeout_s = request if len(request) == 4 else (*request, None)
            reply = core.run(op_id, op, arg, timeout_s)
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as error:
                conn.send(failure(op_id, f"sending the {op} result to the pool (it must be picklable)", error))
    except (EOFError, OSError):
        return  # the pool closed its end: it gave up on this worker
    finally:
        core.close()
        conn.close()


def process_main(conn: Connection, target: EnvTarget, kwargs: dict[str, Any], start_op_id: int) -> None:
    """Entry point of a worker process.

    Ctrl-C goes to the whole process group: the worker ignores it so that the parent alone decides
    how to shut down (closing envs cleanly). SIGTERM closes the env, then ends the worker. A
    watchdog sends that SIGTERM if the parent disappears without closing the worker (even mid-op),
    so no worker, and no VM, outlives its trainer.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    serve(conn, target, kwargs, start_op_id)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM: leave whatever the worker is doing through `serve`'s clean-up (the env is closed);
    a second SIGTERM must not interrupt that close."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _exit_with_parent(close_grace_s: float = CLOSE_GRACE_S) -> None:
    parent = multiprocessing.parent_process()  # the creating process, also under forkserver
    if parent is not None:
        parent.join()  # returns when the parent is gone
        os.kill(os.getpid(), signal.SIGTERM)  # close the env in the main thread, then exit
        time.sleep(close_grace_s)
        os._exit(1)  # the close hung: end anyway
