"""Supervised warm start: behaviour cloning of expert demonstrations, cached on disk.

The tiny policy starts from random weights and RL needs some successes to learn from, so it is
first fine-tuned on demonstration `TrainingSample`s (their trainable turns carry the expert
responses). The loss is the token-mean negative log-likelihood of the target tokens of a batch,
L = −(1/N) Σ log π_θ(y_t | context), N the number of target tokens; sample advantages and weights
are ignored (every demonstration counts the same).

Optimisation: AdamW on `policy.trainable_parameters()` (all weights, or the LoRA adapters),
linear warm-up over the first 5% of steps then cosine decay to 10% of `lr`, gradient norm clipped
at `max_grad_norm`. Batches are drawn without replacement from a seeded shuffle of the samples,
reshuffled at the end of each pass.

Cache: with `cache_dir`, the result is stored under a key hashing the samples (instructions,
screenshots, responses, target flags), the policy (model class and configuration, LoRA settings,
template, image processor budget, a fingerprint of its current weights) and the hyper-parameters.
If `cache_dir` already holds that key, the trained weights are loaded instead of training again.
The entry holds only the trainable parameters (the others are covered by the key's fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from steprl.algo.context import step_dialogue
from steprl.policy.vlm import VLMPolicy
from steprl.types import TrainingSample, Trajectory

_CACHE_VERSION = 1
_STATE_FILE = "trainable.safetensors"
_META_FILE = "warmstart.json"


@dataclass(frozen=True)
class WarmStartConfig:
    """Hyper-parameters of the warm start (all part of the cache key)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0


@dataclass
class WarmStartResult:
    """What happened: the per-step losses (from the cache when loaded), where the entry lives."""

    key: str
    losses: list[float] = field(default_factory=list)
    from_cache: bool = False
    path: Path | None = None
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Fingerprints (the cache key)
# --------------------------------------------------------------------------------------------


def labelled_step_samples(
    trajectory: Trajectory, labels: Sequence[str], *, history_responses: int = 3, history_screenshots: int = 0
) -> list[TrainingSample]:
    """One supervised sample per turn of a demonstration: the context the policy will act in (STEP's
    window of past responses, `step_dialogue`) with the expert's label for that state as the target."""
    return [
        TrainingSample(
            step_dialogue(
                trajectory.task.instruction,
                trajectory.turns[:t],
                turn.observation.screenshot,
                num_responses=history_responses,
                num_screenshots=history_screenshots,
                response=label,
                trainable=True,
                a11y=turn.observation.a11y,
            ),
            advantage=1.0,
            task_id=trajectory.task.id,
            source="step",
        )
        for t, (turn, label) in enumerate(zip(trajectory.turns, labels))
    ]


def samples_fingerprint(samples: Sequence[TrainingSample]) -> str:
    """sha256 over everything the loss sees: instructions, a11y, screenshots, responses, targets."""
    digest = hashlib.sha256()
    for sample in samples:
        dialogue = sample.dialogue
        digest.update(json.dumps([dialogue.instruction, dialogue.a11y, len(dialogue.turns)]).encode())
        for turn in dialogue.turns:
            if turn.screenshot is None:
                digest.update(b"-")
            else:
                shot = np.ascontiguousarray(turn.screenshot)
                digest.update(repr((shot.shape, str(shot.dtype))).encode())
                digest.update(shot.tobytes())
            digest.update(json.dumps([turn.response, list(turn.response_ids), turn.trainable]).encode())
    return digest.hexdigest()


def weights_fingerprint(model: torch.nn.Module, *, sample: int = 4096) -> str:
    """sha256 over every tensor's name, shape and dtype and up to `sample` evenly spaced values.

    Sampled so that fingerprinting a 7B model stays cheap; any re-initialisation or training step
    changes the sampled values.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        if flat.numel() > sample:
            flat = flat[:: math.ceil(flat.numel() / sample)]
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(flat.float().cpu().numpy().tobytes())
    return digest.hexdigest()


def policy_fingerprint(policy: VLMPolicy) -> str:
    """sha256 of what makes a policy: model class + configuration, LoRA, template, image budget, weights."""
    image_size = getattr(policy.image_processor, "size", None)
    parts = {
        "model": type(policy.hf_model).__name__,
        "config": policy.hf_model.config.to_dict(),
        "lora": policy.lora_config,
        "template": policy.template.name,
        "image_size": str(image_size),
        "trainable": sorted(name for name, p in policy.model.named_parameters() if p.requires_grad),
        "weights": weights_fingerprint(policy.model),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(policy: VLMPolicy, samples: Sequence[TrainingSample], config: WarmStartConfig) -> str:
    """The cache key: samples identity + policy identity + hyper-parameters."""
    parts = [_CACHE_VERSION, samples_fingerprint(samples), policy_fingerprint(policy), asdict(config)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def lr_factor(step: int, total: int) -> float:
    """Multiplier of lr at `step` (0-based): linear warm-up over the first 5% of steps, then cosine
    from 1 down to 0.1 at the last step."""
    warmup = max(1, round(0.05 * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_order(num_samples: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Indices of each step's batch: passes over a seeded shuffle, reshuffled every pass."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    batches = []
    for _ in range(steps):
        batch = []
        while len(batch) < min(batch_size, num_samples):
            if not order:
                order = rng.permutation(num_samples).tolist()
            batch.append(order.pop())
        batches.append(batch)
    return batches


def sft_loss(policy: VLMPolicy, samples: Sequence[TrainingSample]) -> torch.Tensor:
    """Token-mean negative log-likelihood of the target tokens of `samples`."""
    batch = policy.collate([s.dialogue for s in samples])
    logp, _ = policy.token_logprobs(batch)
    target = batch["target_mask"].to(logp.device)
    count = target.sum()
    if int(count) == 0:
        raise ValueError("The warm-start batch has no target tokens: demonstration samples need a trainable turn.")
    return -(logp * target).sum() / count


def warm_start(
    policy: VLMPolicy,
    samples: Sequence[TrainingSample],
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    log_every: int = 0,
    log: Callable[[str], None] = print,
) -> WarmStartResult:
    """Fine-tune `policy` in place on `samples` (see the module docstring), or load the cached result.

    Returns a WarmStartResult; `log_every` > 0 prints the mean loss every that many steps.
    """
    if not samples:
        raise ValueError("warm_start needs at least one demonstration sample.")
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"warm_start needs steps >= 1, batch_size >= 1 and lr > 0 (got {steps}, {batch_size}, {lr}).")
    config = WarmStartConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, max_grad_norm=max_grad_norm, seed=seed)
    key = cache_key(policy, samples, config)
    entry = Path(cache_dir) / f"warmstart-{key}" if cache_dir is not None else None
    if entry is not None and (entry / _META_FILE).is_file():
        _load_trainable(policy, entry / _STATE_FILE)
        meta = json.loads((entry / _META_FILE).read_text())
        return WarmStartResult(key=key, losses=meta["losses"], from_cache=True, path=entry, seconds=meta["seconds"])

    start = time.perf_counter()
    losses = _train(policy, samples, config, log_every, log)
    seconds = time.perf_counter() - start
    if entry is not None:
        _save_entry(policy, entry, {"key": key, "config": asdict(config), "losses": losses, "seconds": seconds, "samples": len(samples)})
    return WarmStartResult(key=key, losses=losses, from_cache=False, path=entry, seconds=seconds)


def _train(policy: VLMPolicy, samples: Sequence[TrainingSample], config: WarmStartConfig, log_every: int, log: Callable[[str], None]) -> list[float]:
    params = policy.trainable_parameters()
    if not params:
        raise ValueError("The policy has no trainable parameters (everything frozen?).")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config.steps))
    was_training = policy.model.training
    policy.model.train()
    losses: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # dropout masks (LoRA dropout) are seeded too
        for step, indices in enumerate(batch_order(len(samples), config.steps, config.batch_size, config.seed)):
            loss = sft_loss(policy, [samples[i] for i in indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if log_every and (step + 1) % log_every == 0:
                window = losses[-log_every:]
                log(f"warm start step {step + 1}/{config.steps}: loss {sum(window) / len(window):.4f}")
    policy.model.train(was_training)
    return losses


# --------------------------------------------------------------------------------------------
# Cache entries
# --------------------------------------------------------------------------------------------


def _trainable_state(policy: VLMPolicy) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().cpu() for name, p in policy.model.named_parameters() if p.requires_grad}


def _save_entry(policy: VLMPolicy, entry: Path, meta: dict) -> None:
    """Write the entry into a temporary directory and rename it into place (no half-written entries)."""
    from safetensors.torch import save_file

    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".warmstart-", dir=entry.parent))
    try:
        save_file(_trainable_state(policy), str(tmp / _STATE_FILE))
        (tmp / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if entry.exists():
            shutil.rmtree(entry)
        tmp.rename(entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_trainable(policy: VLMPolicy, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path), device=str(policy.device))
    expected = {name for name, p in policy.model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        raise ValueError(f"The warm-start cache entry '{path.parent}' does not match this policy's trainable parameters; delete it.")
    with torch.no_grad():
        parameters = dict(policy.model.named_parameters())
        for name, value in state.items():
            parameters[name].copy_(value)
