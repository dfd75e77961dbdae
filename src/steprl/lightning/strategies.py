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

Calling the policy between training steps (`prepare_policy_for_rollouts`): each RL round rolls out,
scores old log-probs and (vLLM) saves and probes the adapter before Lightning's first forward
through the FSDP root. FSDP initialises lazily: the first FSDP unit whose forward (or state-dict
hook) runs declares itself the root. If that is an inner unit (a decoder layer called by the
rollout), the real root later finds a second root below it and torch stops the first training step
("Non-root FSDP instance's `_is_root` should not have been set yet"). The round therefore first
runs a no-op through the root's own forward, which initialises the whole tree exactly as the
first training step would; afterwards inner units called directly know they are not roots. And
the round runs in the precision context Lightning gives the training step (`bf16-mixed`:
autocast): with fp32 weights, FSDP's mixed precision hands each unit bf16 weights and only the
root casts its inputs, so an inner unit called directly with fp32 pixel values would fail
(`policy_for_round`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
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


# --------------------------------------------------------------------------------------------
# Calling the policy between training steps
# --------------------------------------------------------------------------------------------


def fsdp_root(model: nn.Module | None) -> nn.Module | None:
    """`model` when it is an FSDP instance (Lightning's `trainer.strategy.model` under FSDP), else None."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    return model if isinstance(model, FullyShardedDataParallel) else None


def run_through_root(root: nn.Module, module: nn.Module, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call `fn(*args, **kwargs)` inside the forward of `root`, the wrapper around `module`.

    The wrapper's forward runs its pre- and post-forward logic around `module.forward`; pointing
    `module.forward` at `fn` for one call is how Lightning runs `training_step` through FSDP.
    """
    module.forward = fn  # an instance attribute shadows the class's forward for this call
    try:
        return root(*args, **kwargs)
    finally:
        del module.forward


def _no_op() -> None:
    """The forward of the initialising call: FSDP's root pre-forward is what matters."""


def initialise_fsdp_root(root: nn.Module, module: nn.Module) -> bool:
    """Make `root` the initialised FSDP root (and every unit below it a non-root) before anything
    calls an inner unit; returns whether it ran. Every rank must call it together (the root's
    pre-forward may gather its own parameters)."""
    if getattr(root, "_is_root", None) is not None:
        return False  # initialised already (a training step or an earlier round ran through it)
    with torch.no_grad():
        run_through_root(root, module, _no_op)
    return True


def disable_double_checkpointing(strategy: Any, hf_model: nn.Module) -> bool:
    """Turn off the model's own gradient checkpointing when the strategy checkpoints the same
    layers (FSDP `activation_checkpointing=true`): one recomputation per layer is enough, two
    cost a third forward. Returns whether it turned it off."""
    if not getattr(strategy, "_activation_checkpointing_kwargs", None):
        return False
    # transformers >= 5.x names it activation checkpointing (the gradient_* names are deprecated)
    name = "activation_checkpointing" if hasattr(hf_model, "is_activation_checkpointing") else "gradient_checkpointing"
    if not getattr(hf_model, f"is_{name}", False):
        return False
    getattr(hf_model, f"{name}_disable")()
    warnings.warn(
        "trainer.strategy.activation_checkpointing=true already recomputes each decoder layer and vision block; "
        "policy.gradient_checkpointing=true was turned off (set it to false with FSDP).",
        stacklevel=2,
    )
    return True


def prepare_policy_for_rollouts(trainer: Any) -> Any:
    """The policy of `trainer.lightning_module`, ready to be called outside a training step.

    Call it at the start of every RL round (and before an evaluation that follows training steps),
    on every rank together, before the round calls the policy. Under FSDP it first initialises the
    root (see the module docstring: otherwise the first training step fails) and turns off doubled
    activation checkpointing. Then the engine serves the current weights (`engine.sync_weights()`:
    the vLLM engine pushes the adapter when any rank stepped its optimiser since the last push,
    gathering sharded weights with every rank; the HF engine has nothing to do).
    """
    module = trainer.lightning_module
    policy = module.policy
    root = fsdp_root(getattr(trainer.strategy, "model", None))
    if root is not None:
        hf_model = getattr(policy, "hf_model", None)
        if hf_model is not None:
            disable_double_checkpointing(trainer.strategy, hf_model)
        initialise_fsdp_root(root, module)
    sync_weights = getattr(getattr(policy, "engine", None), "sync_weights", None)
    if sync_weights is not None:
        with _eval_mode(module), torch.no_grad(), round_precision(trainer):
            sync_weights()  # the probe check is a trainer forward: same precision as the round's
    return policy


def round_precision(trainer: Any) -> contextlib.AbstractContextManager:
    """Under FSDP, the precision context of Lightning's training step (`bf16-mixed`: autocast),
    for calls into the policy outside it; elsewhere nothing (today's behaviour)."""
    if fsdp_root(getattr(trainer.strategy, "model", None)) is None:
        return contextlib.nullcontext()
    plugin = getattr(trainer.strategy, "precision_plugin", None)
    return plugin.forward_context() if plugin is not None else contextlib.nullcontext()


@contextlib.contextmanager
def policy_for_round(trainer: Any) -> Iterator[Any]:
    """`with policy_for_round(trainer) as policy:` run a round (or an evaluation) with it.

    `prepare_policy_for_rollouts` first (every rank together), then the block in the precision
    context of the training step under FSDP (see the module docstring). Rollouts call the policy
    from the thread that enters the block (autocast is per thread).
    """
    policy = prepare_policy_for_rollouts(trainer)
    with round_precision(trainer):
        yield policy


class _eval_mode:
    """`module` in eval mode inside the block (the probe check is a no-grad inference pass)."""

    def __init__(self, module: nn.Module):
        self.module, self.was_training = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)
