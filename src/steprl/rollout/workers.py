"""What an env worker runs: build one environment, then execute reset / step / evaluate on request.

The same code serves a worker process, a worker thread (both talk over a `multiprocessing` pipe)
and a Ray actor, so every pool sees the same replies. A worker never lets an environment exception
escape: it is turned into a failed reply (with its traceback) and the pool decides what to do.
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



@dataclass
class Reply:
    """A worker's answer to one request (`op_id` echoes the request so stale answers are dropped)."""

    op_id: int
    ok: bool
    value: Any = None  # the op's return value when ok, else a one-line error message
    elapsed_s: float = 0.0  # time spent inside the environment call, measured by the worker
    detail: str = ""  # the formatted traceback of a failure


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

    def run(self, op_id: int, op: str, arg: Any) -> Reply:
        began = time.perf_counter()
        try:
            value = run_op(self.env, op, arg)  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - an env that raises is the pool's business
            return failure(op_id, op, error, time.perf_counter() - began)
        return Reply(op_id, True, value, time.perf_counter() - began)

    def close(self) -> None:
        """Close the environment; a failing close must not keep the worker from exiting."""
        if self.env is not None:
            env, self.env = self.env, None
            try:
                env.close()
            except Exception:  # noqa: BLE001
                pass


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
            op_id, op, arg = request
            reply = core.run(op_id, op, arg)
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
    how to shut down (closing envs cleanly). A watchdog ends the worker if the parent disappears
    without closing it (even mid-op), so no worker outlives its trainer.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    serve(conn, target, kwargs, start_op_id)


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()  # the creating process, also under forkserver
    if parent is not None:
        parent.join()  # returns when the parent is gone
        os._exit(1)
