"""`RayPool`: env workers as Ray actors, so environments can live on other machines (`rollout=ray`).

Each actor owns one env (the same `WorkerCore` as the local workers). Ray is an optional
dependency: `pip install 'steprl[distributed]'` (or `pip install ray`). The pool connects to the
cluster at `address` (None: start a local one, unless Ray is already initialised in this process)
and shuts Ray down on close only if it started it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from steprl.envs.base import EnvTarget
from steprl.errors import EnvPoolError, MissingDependencyError
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


def check_capacity(
    num_workers: int,
    cpus_per_worker: float,
    resources_per_worker: dict[str, float],
    cluster: dict[str, float],
    *,
    autoscaling: bool,
) -> None:
    """Fail at once, with the arithmetic, when the cluster can never place the actors the pool asks
    for (otherwise every actor that does not fit waits for the whole start timeout). A cluster the
    pool connected to (`address` set or Ray already running) may grow with an autoscaler, so there
    a shortfall is only a warning."""
    asks = {"CPU": num_workers * cpus_per_worker, **{k: num_workers * v for k, v in resources_per_worker.items()}}
    per_worker = {"CPU": cpus_per_worker, **resources_per_worker}
    for name, wanted in asks.items():
        have = float(cluster.get(name, 0.0))
        if wanted <= have:
            continue
        fits = int(have // per_worker[name]) if per_worker[name] > 0 else num_workers
        message = (
            f"rollout=ray: {num_workers} env actors x {per_worker[name]:g} {name} = {wanted:g} {name}, but the Ray "
            f"cluster has {have:g} {name}, so only {fits} actor(s) can ever start. Set rollout.pool.num_workers={max(fits, 1)}"
            + (f" or rollout.pool.num_cpus_per_worker={have / num_workers:g}" if name == "CPU" and have > 0 else "")
            + " (or add nodes to the cluster)."
        )
        if autoscaling:
            log.warning("%s Waiting up to start_timeout_s for the cluster to grow.", message)
        else:
            raise EnvPoolError(message)


class EnvActor:
    """The body of a Ray actor: one env behind `start` / `run` / `close` (see workers.WorkerCore).
    The env is built in `start`, not in the constructor, so a failure comes back as a reply."""

    def __init__(self, target: EnvTarget, kwargs: dict[str, Any]):
        self.core = WorkerCore(target, kwargs)

    def start(self, op_id: int) -> Reply:
        return self.core.start(op_id)

    def run(self, op_id: int, op: str, arg: Any, timeout_s: float | None = None) -> Reply:
        # Ray runs a plain actor's methods on its main thread, so the op's own limit can fire there
        # and the env (a VM) is closed before the pool ever has to kill the actor.
        return self.core.run(op_id, op, arg, timeout_s)

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
        self.workers_enforce_timeouts = True  # the actor stops an op at its limit and closes its env
        self.close_grace_s = self.close_timeout_s  # the pool kills only after the limit plus this grace
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
            local = self._owns_ray and self.address is None and not os.environ.get("RAY_ADDRESS")
            try:
                check_capacity(
                    self.num_workers, self.num_cpus_per_worker, self.resources_per_worker,
                    ray.cluster_resources(), autoscaling=not local,
                )
            except EnvPoolError:
                self._release()
                raise
            self._actor_class = ray.remote(
                num_cpus=self.num_cpus_per_worker, resources=self.resources_per_worker or None
            )(EnvActor)
        super().start()

    def _launch(self, worker: int, op_id: int) -> None:
        actor = self._actor_class.remote(self._target, self.worker_kwargs(worker))
        self._actors[worker] = actor
        self._refs[actor.start.remote(op_id)] = worker

    def _send(self, worker: int, op_id: int, op: str, arg: Any) -> None:
        self._refs[self._actors[worker].run.remote(op_id, op, arg, self._workers[worker].timeout_s)] = worker

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
        """End an actor; an idle or failed one first closes its env (bounded wait), so its VM stops."""
        actor, self._actors[worker] = self._actors[worker], None
        self._refs = {ref: w for ref, w in self._refs.items() if w != worker}
        if actor is not None:
            if self._workers[worker].state != "busy":  # a busy actor cannot take the close call
                try:
                    self._ray.wait([actor.close.remote()], timeout=self.close_timeout_s)
                except Exception:  # noqa: BLE001 - already gone
                    pass
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
