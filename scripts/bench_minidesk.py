"""MiniDesk speed and task table: env steps/s (expert-driven episodes over the training split,
screenshots rendered), resets/s, and per-family counts / difficulty / expert steps.

    python scripts/bench_minidesk.py [--rounds 3] [--observation screenshot|a11y|both]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from steprl.envs.minidesk import MiniDeskEnv, collect_expert_demonstrations


def bench_steps(env: MiniDeskEnv, rounds: int) -> tuple[float, int]:
    """Env steps per second of expert episodes over the training split (expert planning, text
    formatting and parsing included, as in a rollout)."""
    tasks = env.tasks("train")
    collect_expert_demonstrations(env, tasks)  # warm the sprite caches, as a long run would
    steps, start = 0, time.perf_counter()
    for _ in range(rounds):
        for task in tasks:
            env.reset(task)
            done = False
            while not done:
                done = env.step(env.expert_response()).done
                steps += 1
    return steps / (time.perf_counter() - start), steps


def bench_resets(env: MiniDeskEnv, rounds: int) -> float:
    tasks = env.tasks("train")
    start = time.perf_counter()
    for _ in range(rounds):
        for task in tasks:
            env.reset(task)
    return rounds * len(tasks) / (time.perf_counter() - start)


def family_table(env: MiniDeskEnv) -> str:
    rows: dict[str, dict] = defaultdict(lambda: {"difficulty": set(), "train": 0, "test": 0, "steps": []})
    for split in ("train", "test"):
        for trajectory in collect_expert_demonstrations(env, env.tasks(split)):
            row = rows[trajectory.task.family]
            row["difficulty"].add(trajectory.task.difficulty)
            row[split] += 1
            row["steps"].append(trajectory.length)
            assert trajectory.success, trajectory.task.id
    lines = ["| family | difficulty | #train | #test | expert steps min/mean/max |", "|---|---|---|---|---|"]
    for family, row in rows.items():
        low, high = min(row["difficulty"]), max(row["difficulty"])
        steps = row["steps"]
        lines.append(
            f"| {family} | {low if low == high else f'{low}-{high}'} | {row['train']} | {row['test']} | "
            f"{min(steps)}/{statistics.mean(steps):.1f}/{max(steps)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--observation", default="screenshot", choices=("screenshot", "a11y", "both"))
    args = parser.parse_args()
    env = MiniDeskEnv(observation=args.observation)
    steps_per_s, steps = bench_steps(env, args.rounds)
    print(f"screen {env.screen_size}, observation={args.observation}")
    print(f"env steps/s: {steps_per_s:,.0f}  ({steps} expert-driven steps over {args.rounds} passes of the training split)")
    print(f"resets/s:    {bench_resets(env, args.rounds * 10):,.0f}")
    print(family_table(env))


if __name__ == "__main__":
    main()
