"""Rollout throughput: env steps per second vs. the ideal W / L, and how generation gets batched.

Each env step takes L seconds (simulated latency, optionally jittered by ±jitter·L); W worker
processes step their envs concurrently while a fast fake policy answers. The ideal throughput is
W / L (every worker always busy); the collector should reach >= 80% of it. The table also shows
how many generate calls answered the steps (fewer, larger calls = batching).

    python scripts/bench_rollout.py                       # MiniDesk if installed, else CounterEnv
    python scripts/bench_rollout.py --env counter --workers 1 4 16 --latency 0.2 --jitter 0 0.5
    python scripts/bench_rollout.py --pool thread         # worker threads instead of processes
    python scripts/bench_rollout.py --pool ray            # Ray actors on a local Ray (needs ray)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from steprl.envs import make, register
from steprl.rollout import LocalPool, RolloutCollector
from steprl.types import Task

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for the test doubles
from tests.doubles import COUNTER_ENV, UP, ScriptedPolicy  # noqa: E402

MINIDESK_STEP = "Thought: keep looking.\nAction: wait()"  # a valid action that never ends the task


def minidesk_available() -> bool:
    try:
        return importlib.util.find_spec("steprl.envs.minidesk.env") is not None
    except ModuleNotFoundError:
        return False


def env_setup(name: str, latency: float, jitter: float, steps: int) -> tuple[dict, str]:
    """Env kwargs (latency L, jitter, an episode of exactly `steps` steps) and the policy's text."""
    kwargs = {"step_latency_s": latency, "reset_latency_s": 0.0, "latency_jitter": jitter, "max_steps": steps}
    return kwargs, (MINIDESK_STEP if name == "minidesk" else UP)


def make_pool(kind: str, env: str, env_kwargs: dict, workers: int):
    """`seed_kwarg`: each worker draws its own latency jitter (one shared seed would jitter every
    env identically, i.e. not at all relative to each other)."""
    seed = {"seed_kwarg": "fault_seed"} if env == "minidesk" else {}
    if kind == "ray":
        from steprl.rollout.ray_pool import RayPool

        return RayPool(env, env_kwargs, workers, num_cpus_per_worker=0.01, init_kwargs={"include_dashboard": False}, **seed)
    return LocalPool(env, env_kwargs, workers, backend="thread" if kind == "thread" else "process", **seed)


def bench(args: argparse.Namespace, env: str, tasks: list[Task], workers: int, jitter: float, gather: float) -> dict:
    env_kwargs, text = env_setup(env, args.latency, jitter, args.steps)
    policy = ScriptedPolicy(text, delay_s=args.gen_delay)
    schedule = [tasks[i % len(tasks)] for i in range(args.rounds * workers)]
    pool = make_pool(args.pool, env, env_kwargs, workers)
    with RolloutCollector(pool, max_batch=args.max_batch, gather_wait_s=gather) as collector:
        pool.start()  # worker start-up is not part of the measurement
        began = time.perf_counter()
        trajectories = collector.collect(schedule, policy)
        wall = time.perf_counter() - began
        stats = collector.last_stats
    assert all(t.valid for t in trajectories), [t.env_error for t in trajectories if not t.valid]
    ideal = workers / args.latency
    return {
        "W": workers,
        "jitter": jitter,
        "gather": gather,
        "steps": stats.env_steps,
        "wall_s": wall,
        "steps_per_s": stats.env_steps / wall,
        "ideal": ideal,
        "efficiency": stats.env_steps / wall / ideal,
        "calls": stats.generate_calls,
        "mean_batch": stats.mean_batch_size,
        "max_batch": stats.max_batch_size,
        "gen_s": stats.generate_time_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=["auto", "minidesk", "counter"], default="auto")
    parser.add_argument("--pool", choices=["process", "thread", "ray"], default="process")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--jitter", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--latency", type=float, default=0.2, help="L: seconds per env step")
    parser.add_argument("--steps", type=int, default=10, help="steps per trajectory")
    parser.add_argument("--rounds", type=int, default=5, help="trajectories per worker")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--gather-wait", type=float, nargs="+", default=[0.01], help="collector gather_wait_s")
    parser.add_argument("--gen-delay", type=float, default=0.0, help="seconds per generate call (fake policy)")
    args = parser.parse_args()

    env = args.env if args.env != "auto" else ("minidesk" if minidesk_available() else "counter")
    if env == "counter":
        register("counter", COUNTER_ENV)
    probe = make(env)
    tasks = probe.tasks("train")
    probe.close()

    print(
        f"env={env} pool={args.pool} L={args.latency}s steps/trajectory={args.steps} "
        f"trajectories/worker={args.rounds} max_batch={args.max_batch} generate call={args.gen_delay}s"
    )
    header = f"{'W':>3} {'jitter':>6} {'gather s':>8} {'steps':>6} {'wall s':>7} {'steps/s':>8} {'ideal W/L':>9} {'eff':>6} " \
             f"{'gen calls':>9} {'mean batch':>10} {'max batch':>9} {'steps/call':>10}"
    print(header)
    print("-" * len(header))
    for workers in args.workers:
        for jitter in args.jitter:
            for gather in args.gather_wait:
                r = bench(args, env, tasks, workers, jitter, gather)
                print(
                    f"{r['W']:>3} {r['jitter']:>6.2f} {r['gather']:>8.3f} {r['steps']:>6} {r['wall_s']:>7.2f} {r['steps_per_s']:>8.2f} "
                    f"{r['ideal']:>9.2f} {r['efficiency']:>6.1%} {r['calls']:>9} {r['mean_batch']:>10.2f} "
                    f"{r['max_batch']:>9} {r['steps'] / r['calls']:>10.2f}"
                )


if __name__ == "__main__":
    main()
