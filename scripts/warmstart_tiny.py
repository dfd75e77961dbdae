"""Warm-start the tiny policy on MiniDesk expert demonstrations and measure success per family.

    python scripts/warmstart_tiny.py [--steps 800] [--batch-size 32] [--lr 2e-3] [--passes 4]
                                     [--epsilon 0.1] [--samples 4] [--out .cache/steprl/tiny-warm]

1. MiniDesk (448x280 screenshots, absolute coordinates on the 224x140 image the model sees).
2. Expert demonstrations on the training split (optionally only `--demo-families`, leaving the
   other families unsolved): `--passes` episodes per task, the expert making a
   plausible mistake with probability `--epsilon` per step (pass 0 is clean). Every visited state is
   labelled with the clean expert's response (the recorded mistakes stay in the history), so the
   policy also learns to recover from mistakes.
3. A tiny Qwen2.5-VL checkpoint whose tokenizer is trained on the environment's vocabulary, the
   instructions and the expert responses (cached under `--cache`).
4. Step samples: `step_dialogue` with k=3 history responses and m=0 history screenshots.
5. Supervised warm start (cached by a hash of demos + model + hyper-parameters under `--cache`).
6. Success per family on the train and held-out splits: greedy (one rollout per task) and sampled
   at temperature 1 (`--samples` rollouts per task), with a batched loop: one `policy.generate`
   over all live episodes per step.
7. Saves the warm-started policy with `save_pretrained` to `--out` (a checkpoint directory for
   `policy.pretrained`) and writes `report.json` there.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from steprl.algo.context import step_dialogue
from steprl.envs import make
from steprl.envs.minidesk import collect_expert_demonstrations
from steprl.policy.tiny import cached_tiny_checkpoint, num_parameters
from steprl.policy.vlm import VLMPolicy
from steprl.policy.warmstart import labelled_step_samples, warm_start
from steprl.types import Task, TrainingSample, Trajectory, Turn

SCREEN = (448, 280)
MODEL_IMAGE = (224, 140)
HISTORY_RESPONSES, HISTORY_SCREENSHOTS = 3, 0


def env_kwargs(args: argparse.Namespace) -> dict:
    return {"screen_size": SCREEN, "model_image_size": MODEL_IMAGE, "task_seed": args.task_seed, "max_steps": args.max_steps}


def clean_labels(env, trajectory: Trajectory) -> list[str]:
    """The clean expert's response in every state the (noisy) trajectory visited (replayed)."""
    env.reset(trajectory.task)
    labels = []
    for turn in trajectory.turns:
        labels.append(env.expert_response(epsilon=0.0))
        env.step(turn.response)
    return labels


def demonstration_samples(env, tasks: list[Task], args: argparse.Namespace) -> tuple[list[TrainingSample], list[str]]:
    """Step samples labelled by the clean expert, and every response text (for the tokenizer)."""
    samples, texts = [], []
    for p in range(args.passes):
        epsilon = 0.0 if p == 0 else args.epsilon
        for trajectory in collect_expert_demonstrations(env, tasks, epsilon=epsilon, seed=args.seed + p):
            labels = clean_labels(env, trajectory)
            texts += [t.response for t in trajectory.turns] + labels
            samples += labelled_step_samples(trajectory, labels, history_responses=HISTORY_RESPONSES, history_screenshots=HISTORY_SCREENSHOTS)
    return samples, texts


def run_episodes(policy: VLMPolicy, tasks: list[Task], args: argparse.Namespace, *, greedy: bool) -> list[float]:
    """Roll out every task once, all episodes batched together; returns the scores in task order."""
    envs = [make("minidesk", **env_kwargs(args)) for _ in tasks]
    observations = [env.reset(task) for env, task in zip(envs, tasks)]
    histories: list[list[Turn]] = [[] for _ in tasks]
    scores = [0.0] * len(tasks)
    live = list(range(len(tasks)))
    while live:
        dialogues = [
            step_dialogue(
                tasks[i].instruction,
                histories[i],
                observations[i].screenshot,
                num_responses=HISTORY_RESPONSES,
                num_screenshots=HISTORY_SCREENSHOTS,
                a11y=observations[i].a11y,
            )
            for i in live
        ]
        generations = policy.generate(dialogues, greedy=greedy)
        still = []
        for i, generation in zip(live, generations):
            result = envs[i].step(generation.text)
            histories[i].append(Turn(observations[i], generation.text, generation.token_ids, generation.logprobs))
            observations[i] = result.observation
            if result.done:
                scores[i] = envs[i].evaluate()
            else:
                still.append(i)
        live = still
    return scores


def family_table(policy: VLMPolicy, splits: dict[str, list[Task]], args: argparse.Namespace) -> dict:
    """Per split and family: greedy success rate and sampled success rate (over --samples rollouts)."""
    table: dict = {}
    for split, tasks in splits.items():
        greedy = run_episodes(policy, tasks, args, greedy=True)
        sampled = [run_episodes(policy, tasks, args, greedy=False) for _ in range(args.samples)]
        per_family: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"greedy": [], "sampled": [], "task_rate": []})
        for k, task in enumerate(tasks):
            wins = [float(run[k] >= 1.0) for run in sampled]
            row = per_family[task.family]
            row["greedy"].append(float(greedy[k] >= 1.0))
            row["sampled"].extend(wins)
            row["task_rate"].append(sum(wins) / len(wins))
        table[split] = {
            family: {
                "tasks": len(row["greedy"]),
                "greedy": float(np.mean(row["greedy"])),
                "sampled": float(np.mean(row["sampled"])),
                "tasks_all_solved": sum(r == 1.0 for r in row["task_rate"]),
                "tasks_none_solved": sum(r == 0.0 for r in row["task_rate"]),
            }
            for family, row in sorted(per_family.items())
        }
    return table


def print_table(table: dict, difficulty: dict[str, int]) -> None:
    families = sorted({f for split in table.values() for f in split}, key=lambda f: (difficulty.get(f, 0), f))
    print(f"{'family':14s} {'diff':>4s} | {'train greedy':>12s} {'train sampled':>13s} {'all/none':>8s} | "
          f"{'test greedy':>11s} {'test sampled':>12s} {'all/none':>8s}")
    for family in families:
        cells = []
        for split in ("train", "test"):
            row = table[split].get(family)
            cells.append(f"{row['greedy']:12.2f} {row['sampled']:13.2f} {row['tasks_all_solved']:>3d}/{row['tasks_none_solved']:<4d}"
                         if split == "train" else
                         f"{row['greedy']:11.2f} {row['sampled']:12.2f} {row['tasks_all_solved']:>3d}/{row['tasks_none_solved']:<4d}")
        print(f"{family:14s} {difficulty.get(family, 0):>4d} | {cells[0]} | {cells[1]}")
    for split in ("train", "test"):
        rows = table[split].values()
        n = sum(r["tasks"] for r in rows)
        greedy = sum(r["greedy"] * r["tasks"] for r in rows) / n
        sampled = sum(r["sampled"] * r["tasks"] for r in rows) / n
        print(f"{split}: {n} tasks, greedy success {greedy:.3f}, sampled success {sampled:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--passes", type=int, default=4, help="demonstration episodes per training task")
    parser.add_argument("--epsilon", type=float, default=0.1, help="expert mistake probability per step (passes after the first)")
    parser.add_argument("--demo-families", nargs="*", default=None,
                        help="demonstrate only these families (the others stay unsolved unless RL finds them)")
    parser.add_argument("--samples", type=int, default=4, help="sampled rollouts per task for the sampled success rate")
    parser.add_argument("--max-steps", type=int, default=15)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--intermediate-size", type=int, default=384)
    parser.add_argument("--vision-hidden-size", type=int, default=64)
    parser.add_argument("--vision-depth", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(".cache/steprl"))
    parser.add_argument("--out", type=Path, default=Path(".cache/steprl/tiny-warm"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    timings = {}

    env = make("minidesk", **env_kwargs(args))
    splits = {"train": env.tasks("train"), "test": env.tasks("test")}
    difficulty = {t.family: t.difficulty for t in splits["train"]}

    t0 = time.perf_counter()
    demo_tasks = [t for t in splits["train"] if args.demo_families is None or t.family in args.demo_families]
    if not demo_tasks:
        raise SystemExit(f"--demo-families {args.demo_families} matches no training task; families: {sorted(difficulty)}")
    samples, texts = demonstration_samples(env, demo_tasks, args)
    timings["demos_s"] = time.perf_counter() - t0
    instructions = [t.instruction for split in splits.values() for t in split]
    corpus = env.vocabulary() + instructions + texts
    t0 = time.perf_counter()
    model_kwargs = {"hidden_size": args.hidden_size, "num_layers": args.num_layers, "intermediate_size": args.intermediate_size,
                    "vision_hidden_size": args.vision_hidden_size, "vision_depth": args.vision_depth}
    checkpoint = cached_tiny_checkpoint(args.cache / "checkpoints", corpus, vocab_size=args.vocab_size, image_size=SCREEN,
                                        model_image_size=MODEL_IMAGE, seed=args.seed, **model_kwargs)
    timings["checkpoint_s"] = time.perf_counter() - t0
    policy = VLMPolicy(str(checkpoint), max_new_tokens=args.max_new_tokens, seed=args.seed, max_batch_size=64, device=args.device)
    lengths = [len(policy.encoder.response_ids(s.dialogue.turns[-1].response)) + 1 for s in samples]
    print(f"{len(samples)} step samples from {len(demo_tasks)} training tasks x {args.passes} passes; "
          f"target tokens per sample: mean {np.mean(lengths):.1f}, max {max(lengths)}")
    print(f"tiny policy: {num_parameters(policy.model) / 1e6:.2f}M parameters, vocab {len(policy.tokenizer)}, "
          f"model image {policy.model_image_size(SCREEN)}, checkpoint {checkpoint}")

    t0 = time.perf_counter()
    result = warm_start(policy, samples, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        cache_dir=args.cache / "warmstart", log_every=max(1, args.steps // 10))
    timings["warm_start_s"] = time.perf_counter() - t0
    print(f"warm start: {'loaded from cache ' + str(result.path) if result.from_cache else f'{result.seconds:.0f} s'}, "
          f"loss {result.losses[0]:.3f} -> {np.mean(result.losses[-20:]):.3f}")

    t0 = time.perf_counter()
    table = family_table(policy, splits, args)
    timings["evaluate_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    print_table(table, difficulty)
    print("timings: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))

    policy.save_pretrained(args.out)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "samples": len(samples), "warm_start_key": result.key,
              "from_cache": result.from_cache, "final_loss": float(np.mean(result.losses[-20:])), "table": table, "timings": timings}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved the warm-started policy to {args.out}")


if __name__ == "__main__":
    main()
