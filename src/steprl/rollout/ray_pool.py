"""`RayPool`: env workers as Ray actors, so environments can live on other machines (`rollout=ray`).

Each actor owns one env (the same `WorkerCore` as the local workers). Ray is an optional
dependency: `pip install 'steprl[distributed]'` (or `pip install ray`). The pool connects to the
cluster at `address` (None: start a local one, unless Ray is already initialised in this process)
and shuts Ray down on close only if it started it.
"""

from __future__ import annotations

import logging
from typing import Any

from steprl.envs.base import EnvTarget
from steprl.errors import MissingDependencyError
from steprl.rollout.pools import EnvPool
from steprl.rollout.workers import Reply, WorkerCore, failure

log = logging.getLogger(__name__)


def import_ray() -> Any:
    """Import Ray or say how to install it."""
    try:
        import ray
    except ImportError as error:
        raise MissingDependencyError(
            "RayPool (rollout=ray)", "ray", "pip install 'steprl[distributed]'  (or: pip install ray)"
        ) from error
    return ray


class EnvActor:
    """The body of a Ray actor: one env behind `start` / `run` / `close` (see workers.WorkerCore).
    The env is built in `start`, not in the constructor, so a failure comes back as a reply."""

    def __init__(self, target: EnvTarget, kwargs: dict[str, Any]):
        self.core = WorkerCore(target, kwargs)

    def start(self, op_id: int) -> Reply:
        return self.core.start(op_id)

    def run(self, op_id: int, op: str, arg: Any) -> Reply:
        return self.core.run(op_id, op, arg)

    def close(self) -> None:
        self.core.close()


class RayPool(EnvPool):
    """Env workers as Ray actors.

    `num_cpus_per_worker` / `resources_per_worker` place the actors (e.g. a custom resource per
    machine that hosts VMs); `init_kwargs` go to `ray.init` when the pool starts Ray itself.
    """

    def __init__(
        self,
        env: str,
        env_kwargs: dict[str, Any] | None = None,
        num_workers: int = 4,
        *,
        address: str | None = None,
        num_cpus_per_worker: float = 1.0,
        resources_per_worker: dict[str, float] | None = None,
        init_kwargs: dict[str, Any] | None = None,
        start_timeout_s: float = 600.0,
        close_timeout_s: float = 10.0,
        seed_kwarg: str | None = None,
    ):
        self._ray = import_ray()
        super().__init__(env, env_kwargs, num_workers, start_timeout_s=start_timeout_s, seed_kwarg=seed_kwarg)
        self.address = address
        self.num_cpus_per_worker = float(num_cpus_per_worker)
        self.resources_per_worker = dict(resources_per_worker or {})
        self.init_kwargs = dict(init_kwargs or {})
        self.close_timeout_s = float(close_timeout_s)
        self._owns_ray = False
        self._actor_class: Any = None
        self._actors: list[Any] = [None] * self.num_workers
        self._refs: dict[Any, int] = {}  # pending object ref -> worker

    def start(self) -> None:
        if not self.started:
            ray = self._ray
            if not ray.is_initialized():
                ray.init(address=self.address, **self.init_kwargs)
                self._owns_ray = True
            wanted, have = self.num_workers * self.num_cpus_per_worker, ray.cluster_resources().get("CPU", 0.0)
            if wanted > have:
                log.warning(
                    "RayPool wants %d actors x %g CPUs = %g CPUs but the Ray cluster has %g: the rest wait "
                    "for resources (and time out after start_timeout_s). Lower num_cpus_per_worker or add nodes.",
                    self.num_workers, self.num_cpus_per_worker, wanted, have,
                )
            self._actor_class = ray.remote(
                num_cpus=self.num_cpus_per_worker, resources=self.resources_per_worker or None
            )(EnvActor)
        super().start()

    def _launch(self, worker: int, op_id: int) -> None:
        actor = self._actor_class.remote(self._target, self.worker_kwargs(worker))
        self._actors[worker] = actor
        self._refs[actor.start.remote(op_id)] = worker

    def _send(self, worker: int, op_id: int, op: str, arg: Any) -> None:
        self._refs[self._actors[worker].run.remote(op_id, op, arg)] = worker

    def _receive(self, wait_s: float) -> list[tuple[int, Reply]]:
        ray = self._ray
        if not self._refs:
            return []
        refs = list(self._refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
        if ready:  # take everything else that is already done too
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        replies = []
        for ref in ready:
            worker = self._refs.pop(ref)
            try:
                replies.append((worker, ray.get(ref)))
            except Exception as error:  # noqa: BLE001 - the actor died (RayActorError) or similar
                replies.append((worker, failure(self._workers[worker].op_id, "the Ray actor", error)))
        return replies

    def _kill(self, worker: int) -> None:
        actor, self._actors[worker] = self._actors[worker], None
        self._refs = {ref: w for ref, w in self._refs.items() if w != worker}
        if actor is not None:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _shutdown(self, workers: list[int]) -> None:
        """Close the envs of idle actors (in parallel, bounded wait), then end the actors."""
        closing = [self._actors[w].close.remote() for w in workers if self._actors[w] is not None]
        if closing:
            _, unfinished = self._ray.wait(closing, num_returns=len(closing), timeout=self.close_timeout_s)
            if unfinished:
                log.warning("%d Ray env actors did not close within %g s", len(unfinished), self.close_timeout_s)
        for worker in workers:
            self._kill(worker)

    def _release(self) -> None:
        self._refs.clear()
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
