"""Lightning strategies for 7B policies: FSDP and DeepSpeed ZeRO, set up for Qwen2-VL / Qwen2.5-VL.

`conf/trainer/fsdp.yaml` and `conf/trainer/deepspeed.yaml` build their strategy with these factories
(`_target_: steprl.lightning.strategies.fsdp_strategy`), so the knobs a user turns are a handful of
config keys, not FSDP / DeepSpeed objects.

- FSDP: each decoder layer and each vision block is one FSDP unit (they hold nearly all the
  weights; LoRA adapters live inside them, so frozen and trainable weights share a unit, which is
  why `use_orig_params` stays on). With `wrap_remaining=True` every other module that owns weights
  (embeddings, LM head, norms, patch embedding, merger) becomes a small unit of its own, so the
  root holds none and a direct call into the model outside the root's forward (the old-log-prob
  pass) finds every weight in a unit that gathers it. Activation checkpointing wraps the same layer
  classes (then leave `policy.gradient_checkpointing` off: one recomputation is enough). FSDP
  flattens the weights of a unit into one tensor of one dtype: keep `policy.dtype=float32` with
  `precision=bf16-mixed` (bf16 compute, fp32 weights sharded over the ranks).
- DeepSpeed: ZeRO stage 2 (optimizer states and gradients sharded, weights replicated: in-process
  HF rollouts keep working) or 3 (weights sharded too: rollouts need `policy.engine=vllm`), with
  optional CPU offload of the optimizer (and, at stage 3, of the weights). `deepspeed` is an
  optional dependency: the factory says how to install it.

Parameter sharding (FSDP FULL_SHARD / SHARD_GRAD_OP, ZeRO-3) puts collectives inside every forward,
so per-rank decoding with the HF engine would deadlock; `HFEngine` refuses with a clear message.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from steprl.errors import MissingDependencyError

#: The repeated blocks of Qwen2-VL (UI-TARS-7B-DPO) and Qwen2.5-VL (UI-TARS-1.5-7B): decoder layers
#: and vision blocks, as "module:Class" (classes missing from the installed transformers are skipped).
QWEN_VL_LAYER_CLASSES = (
    "transformers.models.qwen2_vl.modeling_qwen2_vl:Qwen2VLDecoderLayer",
    "transformers.models.qwen2_vl.modeling_qwen2_vl:Qwen2VLVisionBlock",
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl:Qwen2_5_VLDecoderLayer",
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl:Qwen2_5_VLVisionBlock",
)
SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")
DEEPSPEED_INSTALL = "pip install deepspeed  (on a machine with CUDA; see https://www.deepspeed.ai)"


def layer_classes(paths: Iterable[str] = QWEN_VL_LAYER_CLASSES) -> tuple[type[nn.Module], ...]:
    """The importable classes among `paths` ("module:Class"); an error when none is."""
    found = []
    for path in paths:
        module_name, _, class_name = path.partition(":")
        try:
            found.append(getattr(importlib.import_module(module_name), class_name))
        except (ImportError, AttributeError):
            continue  # another transformers version: that model family is not installed
    if not found:
        raise ValueError(f"None of the layer classes {list(paths)} can be imported; give trainer.strategy.layer_classes as 'module:Class'.")
    return tuple(found)


class LayerWrapPolicy:
    """FSDP auto-wrap policy: one unit per layer of `classes`, whose insides are not split further;
    with `wrap_remaining`, also one unit per other module that owns parameters directly.

    FSDP calls it as policy(module=..., recurse=..., nonwrapped_numel=...) top-down: recurse=True
    asks whether to visit `module` (its children, then itself), recurse=False whether to wrap it.
    A layer's descendants are remembered when the layer is visited and are then left alone.
    """

    def __init__(self, classes: Sequence[type[nn.Module]], wrap_remaining: bool = True):
        self.classes = tuple(classes)
        self.wrap_remaining = wrap_remaining
        self._inside: set[int] = set()  # ids of modules inside a layer (they stay in the layer's unit)

    def __call__(self, module: nn.Module, recurse: bool, nonwrapped_numel: int = 0, **_: Any) -> bool:
        if id(module) in self._inside:
            return False
        if recurse:
            if isinstance(module, self.classes):
                self._inside.update(id(m) for m in module.modules() if m is not module)
            return True
        if isinstance(module, self.classes):
            return True
        return self.wrap_remaining and any(True for _ in module.parameters(recurse=False))

    def units(self, model: nn.Module) -> list[str]:
        """Names of the modules FSDP's recursive wrap turns into units under this policy (the root,
        wrapped by the strategy itself, is not listed)."""
        names: list[str] = []

        def visit(module: nn.Module, path: str) -> None:
            if not self(module, recurse=True):
                return
            for name, child in module.named_children():
                visit(child, f"{path}.{name}" if path else name)
            if path and self(module, recurse=False):
                names.append(path)

        visit(model, "")
        return names


def fsdp_strategy(
    sharding_strategy: str = "FULL_SHARD",
    activation_checkpointing: bool = True,
    cpu_offload: bool = False,
    state_dict_type: str = "full",
    layer_classes_paths: Sequence[str] | None = None,
    wrap_remaining: bool = True,
    **kwargs: Any,
):
    """A Lightning `FSDPStrategy` for Qwen-VL policies (see the module docstring).

    Args:
        sharding_strategy: FULL_SHARD (ZeRO-3 like) | SHARD_GRAD_OP (ZeRO-2 like) | NO_SHARD (DDP
            like) | HYBRID_SHARD (full shard within a node, replicate across nodes).
        activation_checkpointing: recompute each decoder layer / vision block in the backward pass.
        cpu_offload: keep sharded parameters in CPU memory (slow; for memory-bound full fine-tuning).
        state_dict_type: "full" (one checkpoint file, gathered on rank 0) or "sharded".
        layer_classes_paths: the layer classes as "module:Class" (default: Qwen2-VL and Qwen2.5-VL).
        wrap_remaining: also wrap every other module that owns weights (see `LayerWrapPolicy`).
        kwargs: passed to `FSDPStrategy` (and from there to FSDP).
    """
    from lightning.pytorch.strategies import FSDPStrategy

    if sharding_strategy not in SHARDING_STRATEGIES:
        raise ValueError(f"trainer.strategy.sharding_strategy={sharding_strategy!r}: use one of {', '.join(SHARDING_STRATEGIES)}.")
    if state_dict_type not in ("full", "sharded"):
        raise ValueError(f"trainer.strategy.state_dict_type={state_dict_type!r}: use full or sharded.")
    classes = layer_classes(layer_classes_paths or QWEN_VL_LAYER_CLASSES)
    return FSDPStrategy(
        auto_wrap_policy=LayerWrapPolicy(classes, wrap_remaining),
        activation_checkpointing_policy=set(classes) if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        cpu_offload=bool(cpu_offload),
        state_dict_type=state_dict_type,
        **kwargs,
    )


def check_deepspeed_settings(stage: int, offload_optimizer: bool, offload_parameters: bool) -> None:
    """One clear message per bad ZeRO setting."""
    if stage not in (1, 2, 3):
        raise ValueError(f"trainer.strategy.stage={stage}: ZeRO stages are 1, 2 or 3.")
    if offload_parameters and stage != 3:
        raise ValueError("trainer.strategy.offload_parameters=true needs ZeRO stage 3 (only stage 3 shards the weights).")


def deepspeed_strategy(stage: int = 2, offload_optimizer: bool = False, offload_parameters: bool = False, **kwargs: Any):
    """A Lightning `DeepSpeedStrategy` with ZeRO `stage` (2: optimizer states + gradients sharded;
    3: weights too) and optional CPU offload of the optimizer states (and the weights, stage 3).
    `kwargs` go to `DeepSpeedStrategy` (e.g. allgather_bucket_size, logging_level)."""
    check_deepspeed_settings(stage, offload_optimizer, offload_parameters)
    try:
        importlib.import_module("deepspeed")
    except ImportError as error:
        raise MissingDependencyError("trainer=deepspeed", "deepspeed", DEEPSPEED_INSTALL) from error
    from lightning.pytorch.strategies import DeepSpeedStrategy

    return DeepSpeedStrategy(stage=stage, offload_optimizer=offload_optimizer, offload_parameters=offload_parameters, **kwargs)
