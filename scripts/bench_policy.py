"""Speed of the tiny policy on this machine: generation tokens/s and training samples/s.

    python scripts/bench_policy.py [--threads 2] [--repeats 5] [--gen-batch 16] [--train-batch 32]

Builds a tiny checkpoint (random weights, tokenizer trained on MiniDesk-like text) in a temporary
directory, then times, on step contexts (one 448x280 screenshot + 3 history responses):
- batched generation (sampled and greedy) of --gen-batch dialogues, in generated tokens/s;
- one-by-one generation of the same dialogues, for comparison with batching;
- collate (encode + pad) and forward + backward of the training path on --train-batch samples.
Prints the median over --repeats after one warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from steprl.policy.tiny import build_tiny_checkpoint, num_parameters
from steprl.policy.vlm import VLMPolicy
from steprl.types import Dialogue, DialogueTurn

WORDS = "Click the Save Open Cancel OK button Editor Mail Settings app menu File Edit View tick checkbox apply name field submit".split()


def corpus(rng: np.random.Generator) -> list[str]:
    """Instructions and UI-TARS style responses like MiniDesk's (coordinates on a 224x140 image)."""
    instructions = [" ".join(rng.choice(WORDS, 5)) for _ in range(200)]
    responses = [f"Action: click(start_box='({rng.integers(0, 224)},{rng.integers(0, 140)})')" for _ in range(400)]
    return instructions + responses + ["Action: finished()", "Action: call_user()", "Action: hotkey(key='ctrl s')"] * 20


def step_dialogue(rng: np.random.Generator, respond: bool) -> Dialogue:
    history = [DialogueTurn(None, f"Action: click(start_box='({rng.integers(0, 224)},{rng.integers(0, 140)})')") for _ in range(3)]
    shot = rng.integers(0, 256, size=(280, 448, 3), dtype=np.uint8)
    response = f"Action: click(start_box='({rng.integers(0, 224)},{rng.integers(0, 140)})')" if respond else ""
    return Dialogue(" ".join(rng.choice(WORDS, 5)), history + [DialogueTurn(shot, response, trainable=respond)])


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of `fn()` over `repeats` runs after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gen-batch", type=int, default=16)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_checkpoint(tmp, corpus(rng), vocab_size=1024)
        policy = VLMPolicy(tmp, max_new_tokens=args.max_new_tokens, seed=0)
    size = policy.model_image_size((448, 280))
    print(f"tiny policy: {num_parameters(policy.model) / 1e6:.2f}M parameters, vocab {len(policy.tokenizer)}, "
          f"448x280 screenshots seen at {size[0]}x{size[1]}, torch threads {torch.get_num_threads()}")

    prompts = [step_dialogue(rng, respond=False) for _ in range(args.gen_batch)]
    rows = []
    for label, greedy in (("sampled", False), ("greedy", True)):
        seconds, generations = timed(lambda: policy.generate(prompts, greedy=greedy), args.repeats)
        tokens = sum(len(g.token_ids) for g in generations)
        rows.append((f"generate batch {args.gen_batch} ({label})", seconds, f"{tokens / seconds:8.0f} tokens/s", f"{tokens} tokens"))
    seconds, generations = timed(lambda: [policy.generate([p])[0] for p in prompts], max(1, args.repeats // 2))
    tokens = sum(len(g.token_ids) for g in generations)
    rows.append((f"generate 1 x {args.gen_batch} one by one", seconds, f"{tokens / seconds:8.0f} tokens/s", f"{tokens} tokens"))

    samples = [step_dialogue(rng, respond=True) for _ in range(args.train_batch)]
    seconds, batch = timed(lambda: policy.collate(samples), args.repeats)
    rows.append((f"collate batch {args.train_batch}", seconds, f"{args.train_batch / seconds:8.0f} samples/s", f"T={batch['input_ids'].shape[1]}"))
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-4)
    policy.train()

    def update() -> None:
        logp, _ = policy.token_logprobs(batch)
        loss = -(logp.sum() / batch["target_mask"].sum())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds, _ = timed(update, args.repeats)
    rows.append((f"forward+backward batch {args.train_batch}", seconds, f"{args.train_batch / seconds:8.0f} samples/s", ""))

    print(f"{'measurement':42s} {'median s':>9s}  {'rate':>20s}  note")
    for name, seconds, rate, note in rows:
        print(f"{name:42s} {seconds:9.3f}  {rate:>20s}  {note}")


if __name__ == "__main__":
    main()
