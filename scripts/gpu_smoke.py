"""GPU smoke test: a policy of UI-TARS-7B-DPO's shape through rollout and STEP updates, timed.

    python scripts/gpu_smoke.py                 # Qwen2-VL 7B shape, random bf16 weights, one CUDA GPU
    python scripts/gpu_smoke.py --trainer fsdp  # the same under trainer=fsdp (FSDPStrategy from
                                                # conf/trainer/fsdp.yaml, fp32 weights, bf16-mixed, HF engine),
                                                # two RL epochs, per-epoch timings and peak memory
    python scripts/gpu_smoke.py --tiny          # the same code path with a tiny Qwen2-VL on the CPU (float32:
                                                # bf16 matmuls are several times slower than fp32 on most CPUs)
    python scripts/gpu_smoke.py --tiny --trainer fsdp   # FSDP's code path on the CPU (one process)
    python scripts/gpu_smoke.py --no-vllm       # skip the vLLM phase even where vllm is installed
    python scripts/gpu_smoke.py --no-vllm --epochs 3 --step-latency 1 [--overlap]   # synchronous vs overlapped rounds
                                                # with VM-like env latency (docs/overlap.md)

Phases (each timed):
1. tokenizer: the tiny byte-level BPE of `steprl.policy.tiny`, trained on MiniDesk's vocabulary and
   the UI-TARS prompt (ids < 1024 of the model's 152k vocabulary: fine for a smoke test), and a
   Qwen2-VL image processor with UI-TARS's pixel budget (100·28² .. 2700·28² pixels).
2. model: UI-TARS-7B-DPO's architecture (Qwen2-VL 7B: hidden 3584, 28 layers, 28 heads, 4 KV heads,
   MLP 18944, vocabulary 152064, vision depth 32, width 1280) built from its config in memory, in
   bf16, directly on the GPU (the default device while constructing), random weights: nothing is
   downloaded and nothing big is read from disk. Wrapped by `VLMPolicy.from_model` with LoRA
   (r=64, alpha=128), gradient checkpointing, frozen vision tower (conf/policy/ui_tars_7b_dpo.yaml).
3. HF rollout: `--envs` MiniDesk episodes of at most `--steps` steps, batched by the real
   `RolloutCollector` over the in-process pool; generated tokens per second of generation time.
4. STEP update: `--epochs` epochs (default 1; 2 with `--trainer fsdp`) of the real `RoundRunner` +
   `SuccessRateDataModule` (rollout, SR record, step samples, old log-probs) and
   `StepLightningModule` under `lightning.Trainer(accelerator="gpu", precision="bf16-mixed")`.
   With `--trainer fsdp` the strategy is `steprl.lightning.strategies.fsdp_strategy` as
   conf/trainer/fsdp.yaml sets it (FULL_SHARD, activation checkpointing; on one GPU FSDP keeps the
   weights whole, so the HF engine decodes in-process), the policy as that preset asks
   (policy.dtype=float32, policy.gradient_checkpointing=false), and each round starts with
   `policy_for_round` (issue 20: without it the first training step fails); the
   standalone HF rollout of phase 3 is skipped (the epochs roll out themselves). A random-weight model never succeeds, and STEP trains on
   successful trajectories only, so the smoke uses STEP's pipeline with GRPO advantages on all
   trajectories (preset `step_no_sradv`, SL-GRPO off) and a small entropy bonus, which gives the
   LoRA weights a non-zero gradient: the script checks that they changed. Training samples per
   second of update time.
5. vLLM rollout (only where `vllm` imports; else "vllm: not installed on this machine"): the base
   weights saved to a temporary directory (~15 GB at 7B), a colocated engine started from it, the
   trained LoRA adapter pushed, vLLM's log-probs of a probe checked against the trainer's, the same
   rollout as phase 3; generated tokens per second.

Prints one table (seconds per phase, tokens/s, samples/s, peak GPU memory from
torch.cuda.max_memory_allocated; per epoch: time/* of the StepTimer and the epoch's peak memory
under `figures["epochs"]`) and writes it as JSON to $OUT/gpu_smoke.json when $OUT is set (or
to --json). Needs torch, transformers, peft, lightning, numpy, pillow and ui-tars; never hydra,
omegaconf or wandb, and no network. Runs from a source checkout without installing steprl.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout: steprl need not be installed
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SCREEN = (448, 280)  # MiniDesk screenshots; inside UI-TARS's pixel budget, so the model sees them unresized
UI_TARS_MIN_PIXELS, UI_TARS_MAX_PIXELS = 100 * 28 * 28, 2700 * 28 * 28

#: UI-TARS-7B-DPO = Qwen2-VL-7B dimensions; the tiny twin keeps the classes and the wiring.
SHAPES: dict[str, dict[str, Any]] = {
    "ui-tars-7b-dpo": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        vocab_size=152064, rope_theta=1_000_000.0, mrope_section=[16, 24, 24], rms_norm_eps=1e-6,
        vision_depth=32, vision_embed_dim=1280, vision_heads=16,
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=4096, rope_theta=10_000.0, mrope_section=[2, 3, 3], rms_norm_eps=1e-6,
        vision_depth=2, vision_embed_dim=32, vision_heads=2,
    ),
}


@dataclass
class Report:
    """What the smoke run measured (printed as a table, saved as JSON)."""

    device: str
    model: str
    phases_s: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # "phase: Type: message" when the run failed

    def table(self) -> str:
        rows = [("phase", "seconds")] + [(name, f"{seconds:8.2f}") for name, seconds in self.phases_s.items()]
        rows += [("total", f"{sum(self.phases_s.values()):8.2f}"), ("", "")]
        rows += [("figure", "value")] + [(name, _fmt(value)) for name, value in self.figures.items()]
        width = max(len(name) for name, _ in rows)
        lines = [f"gpu smoke: {self.model} on {self.device}"] + [f"  {name:<{width}}  {value}" for name, value in rows]
        lines += [f"  note: {note}" for note in self.notes]
        lines += ["  versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items())]
        return "\n".join(lines + ([f"  FAILED in {self.error}"] if self.error else []))


def _fmt(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


class Phases:
    """Times named phases and prints each as it ends (so a slow phase shows where it hangs)."""

    def __init__(self, report: Report, started: float):
        self.report = report
        self.started = started
        self.current = "start"

    def __call__(self, name: str):
        self.current = name
        return _Phase(self, name)


class _Phase:
    def __init__(self, phases: Phases, name: str):
        self.phases, self.name = phases, name

    def __enter__(self) -> None:
        self.began = time.perf_counter()
        print(f"[{time.perf_counter() - self.phases.started:6.1f}s] {self.name} ...", flush=True)

    def __exit__(self, *exc: Any) -> None:
        self.phases.report.phases_s[self.name] = time.perf_counter() - self.began


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------


def build_tokenizer_and_processor(env: Any, template_name: str):
    """The tiny BPE tokenizer on MiniDesk's words and the prompt, and Qwen2-VL's image processor
    with UI-TARS's pixel budget."""
    from steprl.policy.prompts import get_template
    from steprl.policy.tiny import build_tokenizer

    try:  # transformers >= 5.x names the PIL backend explicitly
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    template = get_template(template_name)
    corpus = env.vocabulary() + [task.instruction for task in env.tasks("train")]
    corpus += [template.prompt, template.system or ""] * 4
    tokenizer = build_tokenizer(corpus, vocab_size=1024)
    return tokenizer, ImageProcessor(min_pixels=UI_TARS_MIN_PIXELS, max_pixels=UI_TARS_MAX_PIXELS)


def qwen2_vl_config(tokenizer: Any, shape: dict[str, Any]):
    """A Qwen2-VL configuration of `shape` whose special-token ids are the tokenizer's."""
    from transformers import Qwen2VLConfig

    from steprl.policy.tiny import SPECIAL_TOKENS

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=shape["vocab_size"],
            hidden_size=shape["hidden_size"],
            intermediate_size=shape["intermediate_size"],
            num_hidden_layers=shape["num_hidden_layers"],
            num_attention_heads=shape["num_attention_heads"],
            num_key_value_heads=shape["num_key_value_heads"],
            max_position_embeddings=32768,
            max_window_layers=shape["num_hidden_layers"],
            rms_norm_eps=shape["rms_norm_eps"],
            rope_parameters={"rope_type": "default", "rope_theta": shape["rope_theta"], "mrope_section": shape["mrope_section"]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=shape["vision_depth"],
            embed_dim=shape["vision_embed_dim"],
            hidden_size=shape["hidden_size"],
            num_heads=shape["vision_heads"],
            mlp_ratio=4,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|image_pad|>"],  # no videos; the config needs an id
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_model(config: Any, device: torch.device, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """The model with random weights, created directly on `device` in `dtype` (a 7B takes seconds:
    no CPU copy, no checkpoint read)."""
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in bf16 on the GPU, never as an fp32 copy
    try:
        with torch.device(device):
            model = Qwen2VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    text = config.text_config
    model.generation_config = GenerationConfig(eos_token_id=[text.eos_token_id, text.pad_token_id], pad_token_id=text.pad_token_id)
    return model


def lora_snapshot(policy: Any) -> list[torch.Tensor]:
    return [p.detach().float().cpu().clone() for p in policy.trainable_parameters()]


def rollout(policy: Any, tasks: list[Any], env_kwargs: dict[str, Any], envs: int) -> tuple[float, int, int]:
    """(generation seconds, generated tokens, env steps) of one batched rollout of `tasks`."""
    from steprl.rollout import InProcessPool, RolloutCollector

    pool = InProcessPool("minidesk", env_kwargs, num_workers=envs)
    with RolloutCollector(pool, max_batch=envs, gather_wait_s=0.0) as collector:
        trajectories = collector.collect(tasks, policy)
        stats = collector.last_stats
    tokens = sum(len(turn.response_ids) for t in trajectories for turn in t.turns)
    return stats.generate_time_s, tokens, stats.env_steps


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB -> GiB (process peak RSS)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny Qwen2-VL on the CPU (the CPU test of this script)")
    parser.add_argument("--envs", type=int, default=8, help="parallel MiniDesk episodes (= tasks_per_epoch x rollouts_per_task)")
    parser.add_argument("--steps", type=int, default=3, help="MiniDesk step budget per episode")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="training samples per mini-batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="default: bfloat16 on the GPU, float32 with --tiny")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda, cpu with --tiny (--tiny --device cuda: GPU tests)")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM phase")
    parser.add_argument("--trainer", choices=("single", "fsdp"), default="single", help="single: one device, no strategy; fsdp: conf/trainer/fsdp.yaml's strategy")
    parser.add_argument("--epochs", type=int, default=None, help="RL epochs of the update phase (default: 1, or 2 with --trainer fsdp)")
    parser.add_argument("--precision", default=None, help="Lightning precision (default: bf16-mixed on the GPU; 32-true for float32 on the CPU)")
    parser.add_argument("--overlap", action="store_true", help="data.overlap=true: collect round t+1 while round t trains (docs/overlap.md)")
    parser.add_argument("--step-latency", type=float, default=0.0, help="simulated seconds per env step (reset: 3x), so the environment dominates as on VMs")
    parser.add_argument("--json", type=Path, default=None, help="write the report here (default: $OUT/gpu_smoke.json when $OUT is set)")
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    requested_precision = args.precision
    args.epochs = args.epochs or (2 if args.trainer == "fsdp" else 1)
    if args.trainer == "fsdp":
        # conf/trainer/fsdp.yaml: fp32 weights (one dtype per FSDP unit, LoRA is fp32), bf16 compute
        if args.dtype not in (None, "float32"):
            parser.error("--trainer fsdp keeps the weights in float32 (FSDP flattens each unit into one dtype)")
        args.dtype = "float32"
        args.precision = "bf16-mixed" if args.device == "cuda" else "32-true"
    else:
        args.dtype = args.dtype or ("float32" if args.tiny else "bfloat16")
        args.precision = "bf16-mixed" if args.dtype == "bfloat16" else "32-true"
    args.precision = requested_precision or args.precision
    if args.envs < 2 or args.envs % 2:
        parser.error("--envs must be an even number >= 2 (tasks x 2 rollouts each at least)")
    return args


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: run with --tiny for the CPU version of this smoke test.")
    try:
        import steprl.actions  # noqa: F401  (needs the ui-tars package)
    except ImportError as error:
        raise SystemExit(f"steprl cannot import {error.name!r}: install the ui-tars wheel (and its jsonschema dependency).") from None

    device = torch.device(args.device)
    shape_name = "tiny" if args.tiny else "ui-tars-7b-dpo"
    report = Report(
        device=torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        model=f"{shape_name} (Qwen2-VL{'' if args.tiny else ' 7B'}, random weights, {args.dtype}, LoRA r=64, trainer={args.trainer}, {args.epochs} epoch(s), overlap={args.overlap}, step latency {args.step_latency:g} s)",
        versions=package_versions(),
    )
    phase = Phases(report, started)
    try:
        run(args, device, shape_name, report, phase)
    except BaseException as error:  # report what was measured and where it broke, then fail
        report.error = f"{phase.current}: {type(error).__name__}: {error}"
        raise
    finally:
        report.figures["peak_memory_gib"] = peak_memory_gib(device)
        print(report.table(), flush=True)
        out = args.json or (Path(os.environ["OUT"]) / "gpu_smoke.json" if os.environ.get("OUT") else None)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report.__dict__, indent=2) + "\n")
            print(f"wrote {out}")
    return report


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "lightning", "tokenizers", "vllm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    if torch.cuda.is_available():
        versions["cuda"] = str(torch.version.cuda)
    return versions


def run(args: argparse.Namespace, device: torch.device, shape_name: str, report: Report, phase: Phases) -> None:
    """The phases of the module docstring, filling `report`."""
    from steprl.envs import make

    torch.set_float32_matmul_precision("high")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    with phase("tokenizer"):
        probe_env = make("minidesk", screen_size=SCREEN)
        tokenizer, image_processor = build_tokenizer_and_processor(probe_env, "computer_call_user")
        train_tasks = probe_env.tasks("train")
        probe_env.close()

    with phase("model"):
        policy = build_policy(tokenizer, image_processor, SHAPES[shape_name], device, args)
        report.figures["parameters_m"] = sum(p.numel() for p in policy.model.parameters()) / 1e6
        report.figures["lora_parameters_m"] = sum(p.numel() for p in policy.trainable_parameters()) / 1e6

    env_kwargs = {
        "screen_size": list(SCREEN),
        "max_steps": args.steps,
        "coords": policy.coords,
        "model_image_size": list(policy.model_image_size(SCREEN)),
        "step_latency_s": args.step_latency,
        "reset_latency_s": 3 * args.step_latency,
    }
    tasks = [train_tasks[i // 2] for i in range(args.envs)]  # envs/2 tasks x 2 rollouts

    if args.trainer == "single" and not args.step_latency:  # with latency the epochs measure the rollouts
        with phase("hf rollout"):
            seconds, tokens, env_steps = rollout(policy, tasks, env_kwargs, args.envs)
        report.figures["hf_tokens_per_s"] = tokens / seconds if seconds > 0 else 0.0
        report.figures["hf_generated_tokens"] = tokens
        report.figures["env_steps"] = env_steps

    with phase("step update"):  # args.epochs epochs under args.trainer (both in the report's model line)
        samples, update_s, changed, epochs = step_update(policy, train_tasks, env_kwargs, device, args)
    report.figures["train_samples"] = samples
    report.figures["train_samples_per_s"] = samples / update_s if update_s > 0 else 0.0
    report.figures["lora_weights_changed"] = changed
    report.figures["epochs"] = epochs
    if not changed:
        raise RuntimeError("the STEP update left the LoRA weights unchanged: the training path is broken")
    if len(epochs) != args.epochs:
        raise RuntimeError(f"{len(epochs)} of {args.epochs} epochs ran")

    if args.trainer == "fsdp":
        report.notes.append("vllm: skipped with --trainer fsdp (the HF engine's rollouts are measured)")
    else:
        vllm_phase(policy, tasks, env_kwargs, args, report, phase)
    if device.type != "cuda":
        report.notes.append("peak_memory_gib is the process's peak resident memory on the CPU")


def build_policy(tokenizer: Any, image_processor: Any, shape: dict[str, Any], device: torch.device, args: argparse.Namespace):
    """The VLMPolicy around the in-memory model, set up as conf/policy/ui_tars_7b_dpo.yaml."""
    from steprl.policy.vlm import VLMPolicy

    model = build_model(qwen2_vl_config(tokenizer, shape), device, getattr(torch, args.dtype), args.seed)
    return VLMPolicy.from_model(
        model,
        tokenizer,
        image_processor,
        meta={"template": "computer_call_user", "coords": "relative1000"},
        dtype=args.dtype,
        device=str(device),
        gradient_checkpointing=args.trainer != "fsdp",  # FSDP checkpoints the layers itself
        freeze_vision_tower=True,
        lora={"r": 64, "alpha": 128},
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        max_batch_size=args.envs,
    )


def step_update(
    policy: Any, train_tasks: list[Any], env_kwargs: dict[str, Any], device: torch.device, args: argparse.Namespace
) -> tuple[int, float, bool, list[dict[str, float]]]:
    """`args.epochs` epochs of the real round runner, datamodule and module under a Lightning
    Trainer; returns (training samples, update seconds, whether the LoRA weights changed, the
    per-epoch figures) — samples and update seconds summed over the epochs."""
    import lightning.pytorch as pl

    from steprl.algo.spec import AlgorithmSpec, build_loss
    from steprl.lightning.callbacks import StepTimer
    from steprl.lightning.datamodule import SuccessRateDataModule
    from steprl.lightning.module import StepLightningModule
    from steprl.rollout import InProcessPool, RolloutCollector
    from steprl.round import RoundRunner

    # STEP's pipeline with GRPO advantages on every trajectory (random weights never succeed) and
    # an entropy bonus, so that the update has a gradient whatever the rewards.
    spec = AlgorithmSpec.from_config(
        {"name": "step_no_sradv", "advantage": "grpo", "use_failed_trajectories": True, "augment": False, "entropy_coef": 0.01, "ppo_epochs": 1}
    )
    collector = RolloutCollector(InProcessPool("minidesk", env_kwargs, num_workers=args.envs), max_batch=args.envs, gather_wait_s=0.0)
    runner = RoundRunner(
        train_tasks=train_tasks,
        collector=collector,
        algo=spec,
        tasks_per_epoch=args.envs // 2,
        rollouts_per_task=2,
        logprob_batch_size=args.batch_size,
        screen_size=SCREEN,
        seed=args.seed,
    )
    datamodule = SuccessRateDataModule(runner, [], batch_size=args.batch_size, overlap=args.overlap)
    module = StepLightningModule(policy=policy, loss=build_loss(spec), optimizer=functools.partial(torch.optim.AdamW, lr=1e-4))
    timer, epochs = StepTimer(), epoch_figures(device)
    with tempfile.TemporaryDirectory(prefix="steprl-smoke-") as root:
        trainer = pl.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            strategy=_strategy(args, device),
            precision=args.precision,
            max_epochs=args.epochs,
            reload_dataloaders_every_n_epochs=1,
            use_distributed_sampler=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            gradient_clip_val=1.0 if args.trainer == "single" else None,  # FSDP clips through its own root (not set here)
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer, epochs],
            default_root_dir=root,
        )
        before = lora_snapshot(policy)
        try:
            trainer.fit(module, datamodule=datamodule)
        finally:
            collector.close()
    changed = any(not torch.equal(a, b) for a, b in zip(before, lora_snapshot(policy)))
    samples = int(sum(e["samples"] for e in epochs.records))
    update_s = sum(e.get("time/update_s", 0.0) for e in epochs.records)
    return samples, update_s, changed, epochs.records


def _strategy(args: argparse.Namespace, device: torch.device) -> Any:
    """conf/trainer/fsdp.yaml's strategy for --trainer fsdp ("auto" otherwise)."""
    if args.trainer != "fsdp":
        return "auto"
    from steprl.lightning.strategies import fsdp_strategy

    strategy = fsdp_strategy(sharding_strategy="FULL_SHARD", activation_checkpointing=True, cpu_offload=False, state_dict_type="full")
    if device.type == "cpu":
        strategy.__class__ = _cpu_fsdp_strategy_class()  # --tiny on a CPU: check this code path without a GPU
    return strategy


def _cpu_fsdp_strategy_class() -> type:
    """Lightning's FSDPStrategy on a CPU: Lightning refuses a CPU accelerator for its own class and
    wraps with device_id=None, which torch FSDP refuses on a CPU; this subclass wraps as
    `FSDPStrategy._setup_model` does, with device_id=cpu, and autocasts on the CPU where Lightning
    autocasts on CUDA (`--precision bf16-mixed`). For checking the script only."""
    from lightning.fabric.strategies.fsdp import _setup_activation_checkpointing
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel

    class CPUFSDPStrategy(FSDPStrategy):
        def setup(self, trainer: Any) -> None:
            plugin = self.precision_plugin  # its autocast is CUDA's: the CPU's takes its place here
            if "mixed" in str(plugin.precision):
                dtype = torch.bfloat16 if plugin.precision == "bf16-mixed" else torch.float16
                plugin.forward_context = lambda: torch.autocast("cpu", dtype=dtype)
            super().setup(trainer)

        def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
            wrapped = FullyShardedDataParallel(
                module=model, cpu_offload=self.cpu_offload, mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"), **self.kwargs,
            )  # fmt: skip
            _setup_activation_checkpointing(wrapped, self._activation_checkpointing_kwargs)
            return wrapped

    return CPUFSDPStrategy


def epoch_figures(device: torch.device) -> Any:
    """A callback that records, per epoch, the StepTimer's time/*, the round's samples and the peak
    memory so far (the round runs in train_dataloader, before any epoch hook, so a per-epoch reset
    would miss the rollout's share)."""
    import lightning.pytorch as pl

    class EpochFigures(pl.Callback):
        def __init__(self) -> None:
            self.records: list[dict[str, float]] = []

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("time/", "train/samples"))}
            round_report = getattr(trainer.datamodule, "last_round", None)
            metrics.update(epoch=trainer.current_epoch, peak_memory_gib_so_far=peak_memory_gib(device))
            metrics["samples"] = float(getattr(round_report, "samples", 0))
            self.records.append(metrics)
            print(f"epoch {trainer.current_epoch}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(metrics.items())), flush=True)

    return EpochFigures()


def vllm_phase(policy: Any, tasks: list[Any], env_kwargs: dict[str, Any], args: argparse.Namespace, report: Report, phase: Phases) -> None:
    """Rollout through a colocated vLLM serving the trained adapter (see the module docstring)."""
    from steprl.policy.vllm_engine import vllm_available

    if args.no_vllm:
        report.notes.append("vllm: skipped (--no-vllm)")
        return
    if not vllm_available():
        print("vllm: not installed on this machine", flush=True)
        report.notes.append("vllm: not installed on this machine")
        return
    hf_engine = policy.engine
    with tempfile.TemporaryDirectory(prefix="steprl-smoke-base-") as base:
        with phase("vllm save base"):
            policy.hf_model.save_pretrained(base, state_dict=_base_state_dict(policy))
            policy.tokenizer.save_pretrained(base)
            policy.image_processor.save_pretrained(base)
        engine = policy.engine = policy.make_engine("vllm", base_checkpoint=base, enforce_eager=True)
        try:
            with phase("vllm start + push"):
                engine.sync()
            report.figures["vllm_probe_gap"] = engine.last_check.gap if engine.last_check else float("nan")
            with phase("vllm rollout"):
                seconds, tokens, _ = rollout(policy, tasks, env_kwargs, args.envs)
            report.figures["vllm_tokens_per_s"] = tokens / seconds if seconds > 0 else 0.0
        finally:
            engine.close()
            policy.engine = hf_engine


def _base_state_dict(policy: Any) -> dict[str, torch.Tensor]:
    """The base model's weights under their plain names (LoRA layers' base weights, adapters left out)."""
    state = {}
    for key, value in policy.hf_model.state_dict().items():
        if ".lora_" not in key:
            state[key.replace(".base_layer.", ".")] = value
    return state


if __name__ == "__main__":
    main()
