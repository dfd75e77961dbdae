"""vLLM as the policy's generation engine (`policy.engine=vllm`, optional extra `steprl[vllm]`).

A colocated `vllm.LLM` on the trainer's GPU samples the rollouts; the trainer keeps the HF model for
the update. What keeps the two in agreement:

- Same prompts. vLLM receives the token ids `DialogueEncoder` built, with each run of
  `<|image_pad|>` collapsed to one token (vLLM expands an image placeholder itself, to the number
  of tokens of the image's grid), and the images rebuilt exactly from the encoder's patches
  (`images_from_patches`: un-normalise and un-patchify the pixel values; the rebuilt image already
  has the resized size, so vLLM's processor, given the same pixel budget, does not resize it
  again). The prompt ids vLLM reports back must equal ours token for token, or generation stops
  with an error: rollout ids and training ids always agree.
- Same weights. vLLM loads the base weights from the policy's checkpoint; the LoRA adapter is
  pushed on an explicit event: the trainer calls `engine.on_optimizer_step()` after every
  optimiser step, and `sync_weights()` (every rank together, at the start of a round, from
  `steprl.lightning.strategies.prepare_policy_for_rollouts`) pushes when the step count,
  all-reduced (max) over the ranks, moved since the last push. Parameter version counters are not
  the trigger: DeepSpeed updates its flat buffers without bumping them, and under FSDP each rank
  sees only its shard, so a rank deciding alone could skip a collective the others enter. They
  remain a second trigger for updates made outside an optimiser (a loaded adapter), again agreed
  over the ranks. A push writes the adapter in peft's format into a fresh temporary directory
  (`save_adapter_for_vllm`: parameters gathered first under DeepSpeed ZeRO-3 and FSDP, where each
  rank holds a slice, and named without FSDP's wrapper modules, which make peft's own save write an
  empty adapter) and serves it under a new `LoRARequest` id (vLLM serves what it cached under an
  id it knows): an adapter reload, never a merge; the several optimiser steps of one round cost
  one push.
- A check that it worked. After each push the engine scores a fixed probe (prompt with an image +
  response) and compares its log-probs with the trainer's (`compare_probe`): a gap above
  `probe_tolerance` raises `WeightSyncError` (or warns, `on_mismatch=warn`), and the message says
  whether vLLM still serves the initial policy — the silent failure of a push that did not apply.
- Shared memory. With `enable_sleep_mode`, `offload()` (called by the policy before each
  training-path forward) puts vLLM to sleep at level 1 (weights to CPU, KV cache dropped); the
  next `generate` wakes it.

Log-probs: the engine is started with `logprobs_mode="raw_logprobs"` where the installed vLLM has
the option (vLLM >= 0.10.2): the log-prob of the sampled token under the model's raw next-token
distribution, before temperature, top-p and logit bias — what the trainer computes (temperature 1,
no top-p). They differ from the trainer's π_θ only by the mass of the layout tokens, which the
trainer masks and vLLM bars from sampling with a logit bias of −100 (negligible for a trained
model). Older vLLM V1 releases also return raw log-probs; V0 returned processed ones (warned).

Randomness: each request gets a seed drawn from the policy's generator, so the same seed and the
same sequence of calls give the same samples (up to vLLM's batch-dependent kernels).

Scope: one engine per process (tensor parallel 1): single GPU, or DDP / FSDP / DeepSpeed with one
engine per rank (vLLM's "external_launcher" backend inside the trainer's process group; it reads
`RANK` and `LOCAL_RANK` from the environment, which Lightning's launcher and `srun` do not all set,
so the engine sets them from the process group). LoRA is required (the weight push is an adapter
reload). LoRA on Qwen-VL's vision tower (`include_vision=true`) needs vLLM's
`enable_tower_connector_lora` (passed when set); a vLLM without it drops those weights without a
word, so there it is refused. vLLM's LoRA kernels run in float16 /
bfloat16 only: a float32 policy (the FSDP recipe: fp32 weights, bf16 compute) is served in
bfloat16 (`policy.vllm.dtype`). Nothing here imports vllm at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import contextlib
import copy
import inspect
import logging
import os
import shutil
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from steprl.errors import ConfigError, MissingDependencyError, PromptMismatchError, WeightSyncError
from steprl.policy.engines import SampledTokens, SamplingParams, sharded_parameters
from steprl.policy.inputs import DialogueEncoder, EncodedDialogue
from steprl.types import Dialogue, DialogueTurn

log = logging.getLogger(__name__)

INSTALL = "pip install 'steprl[vllm]'  (or: pip install vllm)"

#: LoRA ranks vLLM accepts for max_lora_rank.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)

#: The logit bias that keeps vLLM from sampling a layout token (the trainer masks them to −inf).
LAYOUT_TOKEN_BIAS = -100.0

#: The dtypes vLLM's LoRA kernels run in.
VLLM_LORA_DTYPES = ("bfloat16", "float16")

def vllm_available() -> bool:
    """Whether vllm can be imported (checked without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def import_vllm() -> Any:
    """Import vllm, or raise MissingDependencyError with the install command."""
    try:
        return importlib.import_module("vllm")
    except ImportError as error:
        raise MissingDependencyError("The vLLM engine (policy.engine=vllm)", "vllm", INSTALL) from error


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VLLMSettings:
    """The `policy.vllm` options. Defaults are [chosen] for a 7B policy colocated with its trainer."""

    gpu_memory_utilization: float = 0.35  # share of GPU memory vLLM takes (weights + KV cache); the rest is the trainer's
    enable_sleep_mode: bool = True  # sleep (weights to CPU, KV cache dropped) during training
    max_model_len: int | None = None  # None: the model's maximum
    max_images_per_prompt: int = 5  # vLLM's limit_mm_per_prompt for images
    enforce_eager: bool = False  # True: no CUDA graphs (faster start, slower decoding)
    enable_prefix_caching: bool = True  # step contexts of one task share the system prompt
    check_weights: bool = True  # compare engine and trainer log-probs on a probe after each push
    probe_tolerance: float = 0.1  # largest mean |Δ log-prob| per probe token accepted [chosen: bf16 kernels differ by ~1e-2]
    on_mismatch: str = "raise"  # raise | warn
    dtype: str | None = None  # bfloat16 | float16 | None: the policy's dtype when it is one of those, else bfloat16
    base_checkpoint: str | None = None  # where vLLM loads the base weights from (None: the policy's checkpoint)
    adapter_dir: str | None = None  # parent of the temporary adapter directories (None: the system temp dir)
    llm_kwargs: Mapping[str, Any] = field(default_factory=dict)  # passed to vllm.LLM as they are

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            problems.append(f"policy.vllm.gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1].")
        if self.max_model_len is not None and self.max_model_len < 1:
            problems.append(f"policy.vllm.max_model_len={self.max_model_len} must be >= 1 or null.")
        if self.max_images_per_prompt < 1:
            problems.append(f"policy.vllm.max_images_per_prompt={self.max_images_per_prompt} must be >= 1.")
        if self.probe_tolerance <= 0.0:
            problems.append(f"policy.vllm.probe_tolerance={self.probe_tolerance} must be > 0.")
        if self.dtype is not None and self.dtype not in VLLM_LORA_DTYPES:
            problems.append(
                f"policy.vllm.dtype={self.dtype!r}: vLLM's LoRA kernels run in {' or '.join(VLLM_LORA_DTYPES)} only "
                "(null: bfloat16 for a float32 policy)."
            )
        if self.on_mismatch not in ("raise", "warn"):
            problems.append(f"policy.vllm.on_mismatch={self.on_mismatch!r}: use raise or warn.")
        if problems:
            raise ValueError("Invalid vLLM engine settings:\n  - " + "\n  - ".join(problems))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> VLLMSettings:
        """From `policy.vllm` (unknown keys are an error listing the known ones)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"Unknown policy.vllm options {unknown}; known: {sorted(known)} (llm_kwargs passes anything to vllm.LLM).")
        return cls(**dict(options))


def lora_rank_slot(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of rank r."""
    for slot in VLLM_LORA_RANKS:
        if rank <= slot:
            return slot
    raise ValueError(f"policy.lora.r={rank} exceeds the largest LoRA rank vLLM serves ({VLLM_LORA_RANKS[-1]}).")


def vllm_dtype(policy_dtype: str, requested: str | None, bf16_supported: bool = True) -> str:
    """The dtype vLLM serves the policy in: `requested`, else the policy's own when vLLM's LoRA
    kernels take it, else bfloat16 (a float32 policy trains with bf16 compute under
    `precision=bf16-mixed`), or float16 on a GPU without bfloat16."""
    if requested is not None:
        if requested not in VLLM_LORA_DTYPES:
            raise ConfigError(f"policy.vllm.dtype={requested!r}: vLLM's LoRA kernels run in {' or '.join(VLLM_LORA_DTYPES)} only.")
        return requested
    if policy_dtype in VLLM_LORA_DTYPES:
        return policy_dtype
    return "bfloat16" if bf16_supported else "float16"


def _bf16_supported() -> bool:
    """False only on a CUDA GPU without bfloat16 (pre-Ampere); CPU-only hosts (tests) say True."""
    return not torch.cuda.is_available() or torch.cuda.is_bf16_supported()


def check_lora_for_vllm(lora_config: Mapping[str, Any] | None, tower_lora: bool = False) -> None:
    """Refuse LoRA settings this vLLM cannot serve. `tower_lora`: whether it can put LoRA on the
    vision tower (EngineArgs.enable_tower_connector_lora; without it vLLM serves the language
    model's adapters only and ignores the vision tower's, with no error)."""
    if lora_config is None:
        raise ValueError(
            "policy.engine=vllm needs LoRA (policy.lora): after each update the engine reloads the adapter, it does not "
            "copy full weights. Use policy.engine=hf for full fine-tuning."
        )
    if lora_config.get("include_vision") and not tower_lora:
        raise ConfigError(
            "policy.lora.include_vision=true with policy.engine=vllm: this vLLM applies no LoRA to Qwen-VL's vision tower "
            "(it has no enable_tower_connector_lora option) and drops those adapter weights without an error, so rollouts "
            "would come from another policy than the one trained. Set policy.lora.include_vision=false, use "
            "policy.engine=hf, or install a vLLM with enable_tower_connector_lora (0.31 has it)."
        )


# --------------------------------------------------------------------------------------------
# Ranks: vLLM's external launcher and agreeing on pushes
# --------------------------------------------------------------------------------------------


def distributed_world() -> tuple[int, int]:
    """(rank, world size) of the trainer's process group; (0, 1) without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank_of(environ: Mapping[str, str]) -> str:
    """This process's rank within its node: LOCAL_RANK (torchrun, Lightning's children), SLURM_LOCALID
    (srun), else the CUDA device Lightning bound the process to."""
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        if environ.get(key, "") != "":
            return str(environ[key])
    if torch.cuda.is_available():
        return str(torch.cuda.current_device())
    raise ConfigError(
        "vLLM's external launcher needs this process's local rank, and none is known (no LOCAL_RANK, no SLURM_LOCALID, "
        "no CUDA device): launch with torchrun, srun or Lightning's launcher."
    )


def launcher_environment(rank: int, world_size: int, environ: Mapping[str, str]) -> dict[str, str]:
    """RANK / LOCAL_RANK / WORLD_SIZE for vLLM's external launcher, from the trainer's process group.

    vLLM reads them from os.environ; Lightning's launcher sets no RANK in its first process and
    `srun` sets none at all. A value already set that contradicts the process group is an error.
    """
    wanted = {"RANK": str(rank), "LOCAL_RANK": local_rank_of(environ), "WORLD_SIZE": str(world_size)}
    for key, value in wanted.items():
        if environ.get(key, value) != value:
            raise ConfigError(
                f"The environment says {key}={environ[key]}, the trainer's process group {value}: vLLM's external launcher "
                "would join the wrong rank. Unset it or launch with matching variables."
            )
    return wanted


def agreed_max(values: Sequence[int]) -> list[int]:
    """Element-wise max of `values` over every rank (the values themselves without a process group).
    Every rank must call it together."""
    if distributed_world()[1] == 1:
        return [int(v) for v in values]
    dist = torch.distributed
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([int(v) for v in values], dtype=torch.long, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [int(v) for v in tensor.tolist()]


#: Wrapper modules that FSDP and activation checkpointing insert into parameter names.
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


@contextlib.contextmanager
def gathered(model: torch.nn.Module, parameters: Sequence[torch.nn.Parameter]):
    """Whole parameters inside the block, every rank together. DeepSpeed ZeRO-3 keeps a slice of
    each parameter per rank (marked by `ds_id`): gathered with `GatheredParameters`. FSDP
    (FULL_SHARD / SHARD_GRAD_OP) keeps flat shards: `summon_full_params` (its root must be
    initialised first, `prepare_policy_for_rollouts`). Anything else is whole already."""
    if any(hasattr(p, "ds_id") for p in parameters):
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for p in parameters if hasattr(p, "ds_id")], modifier_rank=None):
            yield
        return
    if any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules()):
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, writeback=False, rank0_only=False):
            yield
        return
    yield


def adapter_weights(peft_model: torch.nn.Module, adapter: str = "default") -> dict[str, torch.Tensor]:
    """The LoRA weights of `peft_model` under the keys peft saves them with ("...q_proj.lora_A.weight"),
    whatever wraps its layers. peft's own `save_pretrained` finds its layers by module name, and
    FSDP / checkpoint wrappers rename the modules but not the state-dict keys: under FSDP it saves
    an empty adapter, without an error. Read the parameters inside `gathered`."""
    weights = {}
    for name, param in peft_model.named_parameters():
        if ".lora_" not in name or f".{adapter}." not in name:
            continue
        for prefix in WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        weights[name.replace(f".{adapter}.", ".")] = param.detach().to("cpu", copy=True).contiguous()
    return weights


def save_adapter_for_vllm(peft_model: torch.nn.Module, directory: str, adapter: str = "default") -> None:
    """adapter_config.json + adapter_model.safetensors in peft's format, as vLLM loads them."""
    from safetensors.torch import save_file

    weights = adapter_weights(peft_model, adapter)
    bad = sorted(name for name, tensor in weights.items() if tensor.dim() != 2 or tensor.numel() == 0)
    if not weights or bad:
        raise WeightSyncError(
            f"The LoRA adapter to push is {'empty' if not weights else f'made of slices (e.g. {bad[:2]})'}: the trainable "
            "weights were not gathered from their shards. Call prepare_policy_for_rollouts(trainer) on every rank before the round."
        )
    config = copy.copy(peft_model.peft_config[adapter])
    config.inference_mode = True
    config.save_pretrained(directory)
    save_file(weights, os.path.join(directory, "adapter_model.safetensors"))


# --------------------------------------------------------------------------------------------
# Prompts: the encoder's ids and images in vLLM's input format
# --------------------------------------------------------------------------------------------


def collapse_image_tokens(input_ids: Sequence[int], image_token_id: int) -> list[int]:
    """`input_ids` with every run of image tokens replaced by a single one (vLLM expands it).

    Example: [a, V, I, I, I, I, E, b] -> [a, V, I, E, b].
    """
    out: list[int] = []
    for token in input_ids:
        if token == image_token_id and out and out[-1] == image_token_id:
            continue
        out.append(int(token))
    return out


def images_from_patches(pixel_values: torch.Tensor, grid_thw: torch.Tensor, image_processor: Any) -> list[np.ndarray]:
    """The (H, W, 3) uint8 images a Qwen2-VL image processor turned into `pixel_values`.

    The processor resizes an image to a multiple of patch·merge pixels, rescales to [0, 1],
    normalises with (mean, std) and cuts it into rows of (C, temporal, patch, patch) values ordered
    by (merged row, merged column, row in merge window, column in merge window). This undoes those
    steps (first temporal copy), so processing the result again gives the same pixel values.
    """
    patch = int(image_processor.patch_size)
    merge = int(image_processor.merge_size)
    temporal = int(image_processor.temporal_patch_size)
    mean = np.asarray(image_processor.image_mean, dtype=np.float64).reshape(3, 1, 1)
    std = np.asarray(image_processor.image_std, dtype=np.float64).reshape(3, 1, 1)
    scale = float(image_processor.rescale_factor)
    values = pixel_values.detach().to("cpu", torch.float64).numpy()
    images, start = [], 0
    for t, h, w in (tuple(int(v) for v in row) for row in grid_thw):
        count = t * h * w
        rows = values[start : start + count].reshape(t, h // merge, w // merge, merge, merge, 3, temporal, patch, patch)
        start += count
        # (t, H/m, W/m, mh, mw, C, T, ph, pw) -> (C, H/m, mh, ph, W/m, mw, pw) of the first frame
        frame = rows[0, :, :, :, :, :, 0].transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, h * patch, w * patch)
        pixels = (frame * std + mean) / scale
        images.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    if start != len(values):
        raise ValueError(f"pixel_values has {len(values)} patch rows, the grids {start}: they do not belong together.")
    return images


def vllm_prompt(prompt: EncodedDialogue, image_token_id: int, image_processor: Any) -> dict[str, Any]:
    """One vLLM tokens prompt: {"prompt_token_ids": ..., "multi_modal_data": {"image": [PIL images]}}."""
    from PIL import Image

    request: dict[str, Any] = {"prompt_token_ids": collapse_image_tokens(prompt.input_ids, image_token_id)}
    if prompt.pixel_values is not None and prompt.image_grid_thw is not None:
        images = images_from_patches(prompt.pixel_values, prompt.image_grid_thw, image_processor)
        request["multi_modal_data"] = {"image": [Image.fromarray(image) for image in images]}
    return request


def pixel_budget_of(image_processor: Any) -> dict[str, int]:
    """{"min_pixels", "max_pixels"} of a Qwen2-VL image processor (for vLLM's mm_processor_kwargs)."""
    size = getattr(image_processor, "size", None) or {}

    def read(name: str, key: str) -> int | None:
        value = getattr(image_processor, name, None)
        if value is None:
            value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
        return None if value is None else int(value)

    budget = {"min_pixels": read("min_pixels", "shortest_edge"), "max_pixels": read("max_pixels", "longest_edge")}
    return {k: v for k, v in budget.items() if v is not None}


def truncate_at_stop(token_ids: Sequence[int], logprobs: Sequence[float], stop_ids: Iterable[int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Ids and log-probs up to and including the first stop token (as `HFEngine` returns them)."""
    stops = set(stop_ids)
    for index, token in enumerate(token_ids):
        if token in stops:
            return tuple(token_ids[: index + 1]), tuple(logprobs[: index + 1])
    return tuple(token_ids), tuple(logprobs)


def chosen_logprob(position: Any, token: int) -> float:
    """The log-prob of `token` in one position of vLLM's logprobs output ({id: Logprob} or similar)."""
    entry = position[token]
    return float(getattr(entry, "logprob", entry))


# --------------------------------------------------------------------------------------------
# The weight check
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeCheck:
    """Engine vs trainer on the probe's response tokens (mean absolute log-prob differences)."""

    gap: float  # engine vs the trainer now
    moved: float  # the trainer now vs the trainer at the first push (how much training changed the probe)
    gap_to_initial: float  # engine vs the trainer at the first push
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.gap <= self.tolerance

    @property
    def stale(self) -> bool:
        """The engine is off and closer to the initial policy than to the trained one."""
        return not self.ok and self.moved > self.tolerance and self.gap_to_initial < self.gap

    def message(self) -> str:
        if self.ok:
            return f"vLLM serves the trained weights (mean |Δ log-prob| {self.gap:.4f} <= {self.tolerance})."
        if self.stale:
            return (
                f"vLLM still serves the initial policy: its probe log-probs are {self.gap_to_initial:.4f} from the initial "
                f"policy's and {self.gap:.4f} from the trained one's (training moved them by {self.moved:.4f}). The LoRA "
                "push did not take effect: check that vLLM reloads adapters (a new LoRARequest id per push) and maps "
                "this model's adapter keys."
            )
        return (
            f"vLLM's probe log-probs differ from the trainer's by {self.gap:.4f} per token (tolerance {self.tolerance}). "
            "vLLM serves other weights, another image or another prompt than the trainer: check policy.vllm.base_checkpoint, "
            "the adapter push and the pixel budget, or raise policy.vllm.probe_tolerance if the gap is kernel noise."
        )


def compare_probe(engine: Sequence[float], trainer: Sequence[float], initial: Sequence[float], tolerance: float) -> ProbeCheck:
    """Mean absolute differences between the engine's, the trainer's and the initial trainer's
    log-probs of the probe's response tokens (all three the same length)."""
    e, t, i = (np.asarray(x, dtype=np.float64) for x in (engine, trainer, initial))
    if not (e.shape == t.shape == i.shape) or e.size == 0:
        raise ValueError(f"probe log-probs must be non-empty and of one length; got {e.size}, {t.size}, {i.size}.")
    return ProbeCheck(
        gap=float(np.abs(e - t).mean()),
        moved=float(np.abs(t - i).mean()),
        gap_to_initial=float(np.abs(e - i).mean()),
        tolerance=float(tolerance),
    )


def probe_dialogue() -> Dialogue:
    """A fixed context with an image and a response, scored by both engine and trainer."""
    ys, xs = np.mgrid[0:112, 0:112]
    image = np.stack([(xs * 2) % 256, (ys * 2) % 256, ((xs + ys) * 3) % 256], axis=-1).astype(np.uint8)
    return Dialogue("Open the settings menu.", [DialogueTurn(image, "Thought: the menu is at the top.\nAction: click(start_box='(10,20)')", trainable=True)])


def weights_signature(parameters: Iterable[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    """(storage address, version counter) of each tensor: changes whenever one is updated in place
    (optimiser step, load_state_dict) or replaced."""
    return tuple((int(p.data_ptr()), int(p._version)) for p in parameters)


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class VLLMEngine:
    """A colocated vLLM engine behind the `GenerationEngine` interface (see the module docstring).

    `policy` is the `VLMPolicy` it serves: the engine reads its checkpoint (`source`), dtype, seed,
    LoRA rank, trainable parameters, its peft model and the trainer's log-probs of the probe. The
    `vllm.LLM` is created at the first `generate` (so constructing a policy never starts vLLM) and
    is not pickled (a copy in another process starts its own).
    """

    def __init__(self, model_fn: Callable[[], torch.nn.Module], encoder: DialogueEncoder, *, policy: Any, **options: Any):
        self.settings = VLLMSettings.from_options(options)
        if not vllm_available():
            raise MissingDependencyError("The vLLM engine (policy.engine=vllm)", "vllm", INSTALL)
        lora_config = getattr(policy, "lora_config", None)
        vision = bool(lora_config and lora_config.get("include_vision"))
        check_lora_for_vllm(lora_config, tower_lora=vision and _engine_accepts(import_vllm(), "enable_tower_connector_lora"))
        self.dtype = vllm_dtype(str(getattr(policy, "dtype_name", "bfloat16")), self.settings.dtype, _bf16_supported())
        self.model_fn = model_fn
        self.encoder = encoder
        self.policy = policy
        self.llm: Any = None
        self.asleep = False
        self.lora_request: Any = None
        self.pushes = 0
        self.optimizer_steps = 0  # counted by on_optimizer_step on this rank
        self.last_check: ProbeCheck | None = None
        self._pushed: tuple | None = None  # weights signature at the last push
        self._pushed_steps = -1  # agreed optimiser step count at the last push (-1: never pushed)
        self._local_steps_at_push = -1  # this rank's count at the last push
        self._initial_probe: list[float] | None = None
        self._adapter_dirs: deque[str] = deque()

    def __getstate__(self) -> dict[str, Any]:
        # A running vLLM (CUDA memory, worker processes) does not travel; the copy starts its own.
        state = dict(self.__dict__)
        state.update(llm=None, asleep=False, lora_request=None, _pushed=None, _pushed_steps=-1, _local_steps_at_push=-1, _adapter_dirs=deque())
        return state

    # ---- lifecycle -------------------------------------------------------------------------

    def _checkpoint(self) -> str:
        checkpoint = self.settings.base_checkpoint or getattr(self.policy, "source", None)
        if not checkpoint:
            raise ValueError(
                "The vLLM engine loads the base weights from disk, and this policy was built in memory (from_model). "
                "Save it (policy.save_pretrained(DIR)) and set policy.vllm.base_checkpoint=DIR."
            )
        return str(checkpoint)

    def llm_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `vllm.LLM` (model, LoRA slots, sleep mode, pixel budget, ...)."""
        vllm = import_vllm()
        checkpoint = self._checkpoint()
        kwargs: dict[str, Any] = {
            "model": checkpoint,
            "tokenizer": checkpoint,
            "dtype": self.dtype,
            "seed": int(self.policy.seed),
            "gpu_memory_utilization": self.settings.gpu_memory_utilization,
            "enable_lora": True,
            "max_lora_rank": lora_rank_slot(int(self.policy.lora_config["r"])),
            "max_loras": 1,
            "enable_sleep_mode": self.settings.enable_sleep_mode,
            "enforce_eager": self.settings.enforce_eager,
            "enable_prefix_caching": self.settings.enable_prefix_caching,
            "limit_mm_per_prompt": {"image": self.settings.max_images_per_prompt},
            "mm_processor_kwargs": pixel_budget_of(self.encoder.image_processor),
        }
        if self.settings.max_model_len is not None:
            kwargs["max_model_len"] = self.settings.max_model_len
        if self.policy.lora_config.get("include_vision"):
            kwargs["enable_tower_connector_lora"] = True  # or vLLM drops the vision tower's adapters
        if distributed_world()[1] > 1:
            # DDP / FSDP / DeepSpeed: one engine per rank inside the trainer's process group (tensor
            # parallel 1 each), instead of vLLM setting up a process group of its own.
            kwargs.update(distributed_executor_backend="external_launcher", tensor_parallel_size=1)
        if _engine_accepts(vllm, "logprobs_mode"):
            kwargs["logprobs_mode"] = "raw_logprobs"
        else:
            warnings.warn(
                "This vLLM has no logprobs_mode option: its log-probs are raw in the V1 engine but temperature-processed in "
                "V0. Upgrade vLLM (>= 0.10.2) to be sure they match the trainer's.",
                stacklevel=2,
            )
        kwargs.update(self.settings.llm_kwargs)
        return kwargs

    def start(self) -> None:
        """Start vLLM (once)."""
        if self.llm is not None:
            return
        vllm = import_vllm()
        arguments = self.llm_arguments()
        if arguments.get("distributed_executor_backend") == "external_launcher":
            os.environ.update(launcher_environment(*distributed_world(), os.environ))
        log.info("starting vLLM on %s (%s)", self._checkpoint(), arguments["dtype"])
        self.llm = vllm.LLM(**arguments)
        self.asleep = False

    def offload(self) -> None:
        """Put vLLM to sleep (level 1: weights to CPU memory, KV cache dropped) before training."""
        if self.llm is not None and self.settings.enable_sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.llm is not None and self.asleep:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the trainer's cached blocks back, or vLLM cannot re-allocate its share
            self.llm.wake_up()
            self.asleep = False
            _reset_prefix_cache(self.llm)

    def close(self) -> None:
        """Stop vLLM and delete the temporary adapter directories."""
        self.llm = None
        self.asleep = False
        self.lora_request = None
        self._pushed = None
        self._pushed_steps = self._local_steps_at_push = -1
        while self._adapter_dirs:
            shutil.rmtree(self._adapter_dirs.popleft(), ignore_errors=True)

    # ---- weights ---------------------------------------------------------------------------

    def on_optimizer_step(self) -> None:
        """The trainer stepped the optimiser (call it after every step, on every rank): the next
        `sync_weights` pushes the adapter."""
        self.optimizer_steps += 1

    def _tensors_changed(self) -> bool:
        """Whether this rank's trainable tensors were replaced or updated in place since the last
        push (an adapter loaded outside the optimiser). Blind to flat-buffer updates (DeepSpeed),
        hence only a second trigger next to the optimiser step count."""
        return self._pushed is not None and weights_signature(self.policy.trainable_parameters()) != self._pushed

    def sync_weights(self) -> bool:
        """Start / wake vLLM and push the adapter if any rank stepped its optimiser (or changed the
        trainable tensors) since the last push; returns whether it pushed. Every rank must call it
        together (it all-reduces, and under ZeRO-3 / FSDP saving gathers): at the start of a round,
        via `prepare_policy_for_rollouts`. After a push the probe check runs (`check_weights`)."""
        self.start()
        self.wake()
        steps, changed = agreed_max([self.optimizer_steps, int(self._tensors_changed())])
        if self._pushed_steps >= 0 and steps == self._pushed_steps and not changed:
            return False
        self._push(steps)
        return True

    def sync(self) -> bool:
        """Before generating: push when this rank's weights changed and it may push alone (a single
        process, or replicated weights under DDP / ZeRO-1/2). Sharded weights (FSDP, ZeRO-3) need
        every rank together, so a pending step there is an error naming the call that was missed."""
        self.start()
        self.wake()
        sharded = distributed_world()[1] > 1 and sharded_parameters(self.model_fn())
        stepped = self.optimizer_steps != self._local_steps_at_push
        if self._pushed_steps >= 0 and not stepped and (sharded or not self._tensors_changed()):
            return False
        if sharded:
            raise WeightSyncError(
                "vLLM's adapter is out of date (never pushed, or the optimiser stepped since), and with sharded weights "
                "(FSDP, ZeRO-3) a push gathers them on every rank together. Call steprl.lightning.strategies.prepare_policy_for_rollouts(trainer) "
                "(or policy.engine.sync_weights()) on every rank at the start of the round, before any rollout."
            )
        self._push(self.optimizer_steps)
        return True

    def _push(self, steps: int) -> None:
        """Push the adapter, check it, and remember what was pushed."""
        self._push_adapter()
        self._pushed_steps, self._local_steps_at_push = steps, self.optimizer_steps
        if self.settings.check_weights:
            self.check_weights()
        self._pushed = weights_signature(self.policy.trainable_parameters())  # after the probe's forwards

    def _push_adapter(self) -> None:
        """Save the adapter to a fresh directory and serve it under a new LoRARequest id."""
        from vllm.lora.request import LoRARequest

        directory = tempfile.mkdtemp(prefix="steprl-lora-", dir=self.settings.adapter_dir)
        with gathered(self.policy.model, self.policy.trainable_parameters()):
            save_adapter_for_vllm(self.policy.model, directory)
        self.pushes += 1
        request = LoRARequest(f"steprl-policy-{self.pushes}", self.pushes, directory)
        previous = self.lora_request
        engine = getattr(self.llm, "llm_engine", None)
        if engine is not None and hasattr(engine, "add_lora"):
            engine.add_lora(request)  # load now: a bad adapter fails here, not mid-rollout
            if previous is not None and hasattr(engine, "remove_lora"):
                engine.remove_lora(previous.lora_int_id)
        self.lora_request = request
        self._adapter_dirs.append(directory)
        while len(self._adapter_dirs) > 2:  # the current one, and the previous in case vLLM loads lazily
            shutil.rmtree(self._adapter_dirs.popleft(), ignore_errors=True)
        _reset_prefix_cache(self.llm)

    def probe_logprobs(self) -> tuple[list[float], list[float]]:
        """(engine, trainer) log-probs of the probe's response tokens."""
        encoded = self.encoder.encode(probe_dialogue(), add_generation_prompt=False)
        targets = [i for i, flag in enumerate(encoded.target_mask) if flag]
        vllm = import_vllm()
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        (output,) = self.llm.generate([self._request(encoded)], params, lora_request=self.lora_request, use_tqdm=False)
        self._check_prompt(encoded, output)
        prompt_logprobs = output.prompt_logprobs
        engine = [chosen_logprob(prompt_logprobs[i], encoded.input_ids[i]) for i in targets]
        trainer = self.policy.trainer_logprobs(encoded)
        return engine, trainer

    def check_weights(self) -> ProbeCheck:
        """Compare engine and trainer on the probe (see `ProbeCheck`); raise or warn when off."""
        engine, trainer = self.probe_logprobs()
        if self._initial_probe is None:
            self._initial_probe = list(trainer)
        check = compare_probe(engine, trainer, self._initial_probe, self.settings.probe_tolerance)
        self.last_check = check
        if check.ok:
            log.info(check.message())
        elif self.settings.on_mismatch == "raise":
            raise WeightSyncError(check.message())
        else:
            log.error(check.message())
            warnings.warn(check.message(), stacklevel=2)
        return check

    # ---- generation ------------------------------------------------------------------------

    def _request(self, prompt: EncodedDialogue) -> dict[str, Any]:
        return vllm_prompt(prompt, self.encoder.image_token_id, self.encoder.image_processor)

    def _check_prompt(self, prompt: EncodedDialogue, output: Any) -> None:
        """vLLM's prompt must be ours token for token. Some vLLM versions report the prompt as it was
        sent (images as one placeholder each); that is accepted, and the probe check covers it."""
        served = list(output.prompt_token_ids)
        if served != list(prompt.input_ids) and served != collapse_image_tokens(prompt.input_ids, self.encoder.image_token_id):
            raise PromptMismatchError(
                f"vLLM built a prompt of {len(served)} tokens where the trainer has {len(prompt.input_ids)} (or other ids): "
                "its image processor resized the screenshots differently. Give vLLM the policy's pixel budget "
                "(mm_processor_kwargs) or use policy.engine=hf."
            )

    def sampling_params(self, params: SamplingParams, seed: int) -> Any:
        """vLLM SamplingParams for one request: the sampled token's log-prob, our stop ids, layout
        tokens barred, a per-request seed."""
        vllm = import_vllm()
        greedy = params.greedy or params.temperature <= 0.0
        return vllm.SamplingParams(
            n=1,
            temperature=0.0 if greedy else float(params.temperature),
            top_p=1.0 if greedy else float(params.top_p),
            max_tokens=int(params.max_new_tokens),
            logprobs=0,  # only the sampled token's log-prob
            stop_token_ids=sorted(params.stop_ids),
            logit_bias={int(t): LAYOUT_TOKEN_BIAS for t in params.disallowed_ids} or None,
            seed=int(seed),
            detokenize=False,
        )

    def generate(self, prompts: list[EncodedDialogue], params: SamplingParams, generator: torch.Generator) -> list[SampledTokens]:
        self.sync()
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),), generator=generator, device=generator.device).tolist()
        requests = [self._request(p) for p in prompts]
        outputs = self.llm.generate(
            requests, [self.sampling_params(params, s) for s in seeds], lora_request=self.lora_request, use_tqdm=False
        )
        results = []
        for prompt, output in zip(prompts, outputs):
            self._check_prompt(prompt, output)
            completion = output.outputs[0]
            ids = [int(t) for t in completion.token_ids]
            logprobs = [chosen_logprob(position, token) for position, token in zip(completion.logprobs, ids)]
            token_ids, token_logprobs = truncate_at_stop(ids, logprobs, params.stop_ids)
            results.append(SampledTokens(token_ids, token_logprobs))
        return results


def _engine_accepts(vllm: Any, name: str) -> bool:
    """Whether this vLLM's engine arguments have `name`."""
    engine_args = getattr(vllm, "EngineArgs", None)
    if engine_args is None:
        return False
    if dataclasses.is_dataclass(engine_args):
        return name in {f.name for f in dataclasses.fields(engine_args)}
    return name in inspect.signature(engine_args).parameters


def _reset_prefix_cache(llm: Any) -> None:
    # Cached prefixes were computed with other weights (or dropped by sleep): start clean.
    reset = getattr(llm, "reset_prefix_cache", None)
    if reset is not None:
        reset()
