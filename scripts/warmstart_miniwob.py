"""Warm-start the tiny policy on MiniWoB++ expert demonstrations and measure success per task type.

    python scripts/warmstart_miniwob.py [--steps 600] [--passes 3] [--epsilon 0.15] [--browsers 3]
                                        [--out assets/policies/tiny-miniwob]

1. MiniWoB++ in headless Chromium (160x210 task area; the model sees it at 168x224 and writes
   absolute coordinates on that image). The task types are `--tasks` (default: docs/miniwob.md's
   ten types, graded 1-3); the train split is `--seeds-per-task` page seeds per type, the test
   split the next `--test-seeds-per-task` seeds (never demonstrated, never trained on).
2. Expert demonstrations on the train split only: `--passes` episodes per instance, the expert
   making a mistake with probability `--epsilon` per step on passes after the first; every visited
   state is labelled with the clean expert's response (steprl.envs.miniwob.demos).
3. A tiny Qwen2.5-VL checkpoint whose byte-level BPE tokenizer is trained on the train split's
   instructions and the expert responses (cached under `--cache`).
4. Step samples: `step_dialogue` with k=3 history responses and m=0 history screenshots (the
   context STEP trains on).
5. Supervised warm start (cached by a hash of demos + model + hyper-parameters under `--cache`).
6. Success per task type on the train and test splits: greedy (one rollout per instance) and
   sampled at temperature 1 (`--samples` rollouts per instance), `--browsers` Chromium instances
   stepping in threads, one batched `policy.generate` per step over all live episodes.
7. Saves the policy with `save_pretrained` to `--out` (a checkpoint directory for
   `policy.pretrained`, see conf/policy/tiny_miniwob.yaml) and writes `report.json` there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from steprl.algo.context import step_dialogue
from steprl.envs import make
from steprl.envs.miniwob.catalog import task_difficulty
from steprl.envs.miniwob.demos import collect_expert_demonstrations
from steprl.policy.tiny import cached_tiny_checkpoint, num_parameters
from steprl.policy.vlm import VLMPolicy
from steprl.policy.warmstart import labelled_step_samples, warm_start
from steprl.types import Task, TrainingSample, Turn

#: docs/miniwob.md: ten task types graded 1 (one click) to 3 (a short form).
DEFAULT_TASKS = (
    "click-test", "click-test-2", "focus-text", "click-button", "click-link", "click-dialog",
    "click-dialog-2", "click-option", "enter-text", "login-user",
)  # fmt: skip
SCREEN = (160, 210)
MODEL_IMAGE = (168, 224)
HISTORY_RESPONSES, HISTORY_SCREENSHOTS = 3, 0


def env_kwargs(args: argparse.Namespace) -> dict:
    return {
        "tasks": list(args.tasks), "seeds_per_task": args.seeds_per_task, "test_seeds_per_task": args.test_seeds_per_task,
        "task_seed": args.task_seed, "max_steps": args.max_steps, "coords": "absolute", "model_image_size": MODEL_IMAGE,
        "episode_time_limit_s": args.episode_time_limit_s,
    }  # fmt: skip


def chromium_count(settle_s: float = 0.0) -> int:
    """Chromium processes on the machine (`pgrep -c chromium`), to check that none leaks; with
    `settle_s`, polls until the count stops falling (a quit browser takes a moment to exit)."""
    deadline = time.monotonic() + settle_s
    while True:
        result = subprocess.run(["pgrep", "-c", "chromium"], capture_output=True, text=True)
        count = int(result.stdout.strip() or 0)
        if count == 0 or time.monotonic() >= deadline:
            return count
        time.sleep(0.25)


def demonstration_samples(env, tasks: list[Task], args: argparse.Namespace) -> tuple[list[TrainingSample], list[str], dict]:
    """Step samples labelled by the clean expert, every response text (for the tokenizer), stats."""
    samples, texts = [], []
    stats = {"episodes": 0, "expert_success": 0, "mistakes": 0}
    for p in range(args.passes):
        epsilon = 0.0 if p == 0 else args.epsilon
        for demo in collect_expert_demonstrations(env, tasks, epsilon=epsilon, seed=args.seed + p):
            trajectory = demo.trajectory
            stats["episodes"] += 1
            stats["expert_success"] += int(trajectory.success and p == 0)
            stats["mistakes"] += demo.mistakes
            texts += [t.response for t in trajectory.turns] + demo.labels
            samples += labelled_step_samples(trajectory, demo.labels, history_responses=HISTORY_RESPONSES, history_screenshots=HISTORY_SCREENSHOTS)
    return samples, texts, stats


def run_wave(policy: VLMPolicy, envs: list, tasks: list[Task], pool: ThreadPoolExecutor, *, greedy: bool) -> list[float]:
    """Roll out `tasks` (at most one per env) together; returns their scores in order."""
    envs = envs[: len(tasks)]
    observations = list(pool.map(lambda pair: pair[0].reset(pair[1]), zip(envs, tasks)))
    histories: list[list[Turn]] = [[] for _ in tasks]
    scores = [0.0] * len(tasks)
    live = list(range(len(tasks)))
    while live:
        dialogues = [
            step_dialogue(tasks[i].instruction, histories[i], observations[i].screenshot,
                          num_responses=HISTORY_RESPONSES, num_screenshots=HISTORY_SCREENSHOTS, a11y=observations[i].a11y)
            for i in live
        ]  # fmt: skip
        generations = policy.generate(dialogues, greedy=greedy)
        results = list(pool.map(lambda pair: envs[pair[0]].step(pair[1].text), zip(live, generations)))
        still = []
        for i, generation, result in zip(live, generations, results):
            histories[i].append(Turn(observations[i], generation.text, generation.token_ids, generation.logprobs))
            observations[i] = result.observation
            if result.done:
                scores[i] = envs[i].evaluate()
            else:
                still.append(i)
        live = still
    return scores


def run_episodes(policy: VLMPolicy, envs: list, tasks: list[Task], pool: ThreadPoolExecutor, *, greedy: bool) -> list[float]:
    """Every task once, in waves of len(envs) concurrent episodes."""
    scores: list[float] = []
    for start in range(0, len(tasks), len(envs)):
        scores += run_wave(policy, envs, tasks[start : start + len(envs)], pool, greedy=greedy)
    return scores


def type_table(policy: VLMPolicy, envs: list, splits: dict[str, list[Task]], args: argparse.Namespace) -> dict:
    """Per split and task type: greedy success rate and sampled success rate (over --samples rollouts)."""
    table: dict = {}
    with ThreadPoolExecutor(len(envs)) as pool:
        for split, tasks in splits.items():
            greedy = run_episodes(policy, envs, tasks, pool, greedy=True)
            sampled = [run_episodes(policy, envs, tasks, pool, greedy=False) for _ in range(args.samples)]
            per_type: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"greedy": [], "sampled": []})
            for k, task in enumerate(tasks):
                per_type[task.family]["greedy"].append(float(greedy[k] >= 1.0))
                per_type[task.family]["sampled"].extend(float(run[k] >= 1.0) for run in sampled)
            table[split] = {
                name: {"instances": len(row["greedy"]), "greedy": float(np.mean(row["greedy"])), "sampled": float(np.mean(row["sampled"]))}
                for name, row in per_type.items()
            }
    return table


def print_table(table: dict, names: list[str]) -> None:
    print(f"{'task type':22s} {'diff':>4s} | {'train greedy':>12s} {'train sampled':>13s} | {'test greedy':>11s} {'test sampled':>12s}")
    for name in names:
        train, test = table["train"][name], table["test"][name]
        print(f"{name:22s} {task_difficulty(name):>4d} | {train['greedy']:12.2f} {train['sampled']:13.2f} | "
              f"{test['greedy']:11.2f} {test['sampled']:12.2f}")  # fmt: skip
    for split in ("train", "test"):
        rows = table[split].values()
        n = sum(r["instances"] for r in rows)
        greedy = sum(r["greedy"] * r["instances"] for r in rows) / n
        sampled = sum(r["sampled"] * r["instances"] for r in rows) / n
        print(f"{split}: {n} instances, greedy success {greedy:.3f}, sampled success {sampled:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds-per-task", type=int, default=16, help="train instances per task type (demonstrated)")
    parser.add_argument("--test-seeds-per-task", type=int, default=8, help="held-out instances per task type (never demonstrated)")
    parser.add_argument("--task-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--passes", type=int, default=3, help="demonstration episodes per training instance")
    parser.add_argument("--epsilon", type=float, default=0.15, help="expert mistake probability per step (passes after the first)")
    parser.add_argument("--samples", type=int, default=2, help="sampled rollouts per instance for the sampled success rate")
    parser.add_argument("--browsers", type=int, default=3, help="Chromium instances for the evaluation")
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--episode-time-limit-s", type=float, default=120.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--intermediate-size", type=int, default=384)
    parser.add_argument("--vision-hidden-size", type=int, default=64)
    parser.add_argument("--vision-depth", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(".cache/steprl"))
    parser.add_argument("--out", type=Path, default=Path(".cache/steprl/tiny-miniwob"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    browsers_before = chromium_count()

    envs = [make("miniwob", **env_kwargs(args)) for _ in range(max(1, args.browsers))]
    try:
        t0 = time.perf_counter()
        splits = {"train": envs[0].tasks("train"), "test": envs[0].tasks("test")}
        samples, texts, demo_stats = demonstration_samples(envs[0], splits["train"], args)
        timings["demos_s"] = time.perf_counter() - t0
        print(f"demonstrations: {demo_stats['episodes']} episodes ({demo_stats['expert_success']}/{len(splits['train'])} "
              f"clean expert successes, {demo_stats['mistakes']} mistakes) in {timings['demos_s']:.0f} s")  # fmt: skip
        corpus = [t.instruction for t in splits["train"]] + texts
        t0 = time.perf_counter()
        model_kwargs = {"hidden_size": args.hidden_size, "num_layers": args.num_layers, "intermediate_size": args.intermediate_size,
                        "vision_hidden_size": args.vision_hidden_size, "vision_depth": args.vision_depth}  # fmt: skip
        checkpoint = cached_tiny_checkpoint(args.cache / "checkpoints", corpus, vocab_size=args.vocab_size, image_size=SCREEN,
                                            model_image_size=MODEL_IMAGE, seed=args.seed, **model_kwargs)  # fmt: skip
        timings["checkpoint_s"] = time.perf_counter() - t0
        policy = VLMPolicy(str(checkpoint), max_new_tokens=args.max_new_tokens, seed=args.seed, max_batch_size=64, device="cpu")
        lengths = [len(policy.encoder.response_ids(s.dialogue.turns[-1].response)) + 1 for s in samples]
        print(f"{len(samples)} step samples; target tokens per sample: mean {np.mean(lengths):.1f}, max {max(lengths)}")
        print(f"tiny policy: {num_parameters(policy.model) / 1e6:.2f}M parameters, vocab {len(policy.tokenizer)}, "
              f"model image {policy.model_image_size(SCREEN)}, checkpoint {checkpoint}")  # fmt: skip

        t0 = time.perf_counter()
        result = warm_start(policy, samples, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            cache_dir=args.cache / "warmstart", log_every=max(1, args.steps // 10))  # fmt: skip
        timings["warm_start_s"] = time.perf_counter() - t0
        print(f"warm start: {'loaded from cache ' + str(result.path) if result.from_cache else f'{result.seconds:.0f} s'}, "
              f"loss {result.losses[0]:.3f} -> {np.mean(result.losses[-20:]):.3f}")  # fmt: skip

        t0 = time.perf_counter()
        table = type_table(policy, envs, splits, args)
        timings["evaluate_s"] = time.perf_counter() - t0
    finally:
        for env in envs:
            env.close()
    timings["total_s"] = time.perf_counter() - started
    browsers_after = chromium_count(settle_s=10.0)
    print_table(table, list(args.tasks))
    print("timings: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"chromium processes: {browsers_before} before, {browsers_after} after")

    policy.save_pretrained(args.out)
    report = {
        "args": {k: (list(v) if isinstance(v, (list, tuple)) else str(v)) for k, v in vars(args).items()},
        "samples": len(samples), "demonstrations": demo_stats, "warm_start_key": result.key, "from_cache": result.from_cache,
        "final_loss": float(np.mean(result.losses[-20:])), "table": table, "timings": timings,
        "chromium_processes": {"before": browsers_before, "after": browsers_after},
    }  # fmt: skip
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved the warm-started policy to {args.out}")


if __name__ == "__main__":
    main()
