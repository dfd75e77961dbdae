"""Trainer strategies on CPU: the FSDP auto-wrap policy picks Qwen-VL's layers (checked against a
real FSDP wrap with a one-process gloo group), the factories build Lightning strategy objects or
say what is missing, the trainer presets compose, and the HF engine refuses sharded weights."""

from __future__ import annotations

import tempfile

import pytest
import torch
import torch.distributed as dist
from torch import nn

from steprl.envs.base import MissingDependencyError
from steprl.lightning.strategies import LayerWrapPolicy, deepspeed_strategy, fsdp_strategy, layer_classes
from steprl.policy.engines import HFEngine, SamplingParams, sharded_parameters


def tiny_qwen2_vl() -> nn.Module:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, bos_token_id=0, eos_token_id=1, pad_token_id=0,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=2, embed_dim=16, hidden_size=32, num_heads=2),
        image_token_id=5, video_token_id=5, vision_start_token_id=3, vision_end_token_id=4,
    )
    return Qwen2VLForConditionalGeneration(config)


def tiny_qwen2_5_vl() -> nn.Module:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, bos_token_id=0, eos_token_id=1, pad_token_id=0,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=2, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, fullatt_block_indexes=[1]),
        image_token_id=5, video_token_id=5, vision_start_token_id=3, vision_end_token_id=4,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def test_layer_classes_are_the_decoder_layers_and_vision_blocks():
    names = sorted(cls.__name__ for cls in layer_classes())
    assert names == ["Qwen2VLDecoderLayer", "Qwen2VLVisionBlock", "Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"]
    with pytest.raises(ValueError, match="None of the layer classes"):
        layer_classes(["no.such.module:Layer"])


@pytest.mark.parametrize("build, layers, blocks", [(tiny_qwen2_vl, 2, 2), (tiny_qwen2_5_vl, 3, 2)])
def test_wrap_policy_units_of_a_tiny_qwen_vl(build, layers, blocks):
    model = build()
    units = LayerWrapPolicy(layer_classes()).units(model)
    assert [u for u in units if ".layers." in u] == [f"model.language_model.layers.{i}" for i in range(layers)]
    assert [u for u in units if ".blocks." in u] == [f"model.visual.blocks.{i}" for i in range(blocks)]
    assert {"model.language_model.embed_tokens", "lm_head", "model.language_model.norm"} <= set(units)
    assert not any(u.startswith(f"model.language_model.layers.0.") for u in units)  # a layer is never split
    # every parameter ends up in exactly one unit (the root keeps none)
    owned = [n for n, _ in model.named_parameters() if not any(n.startswith(u + ".") for u in units)]
    assert owned == []
    only_layers = LayerWrapPolicy(layer_classes(), wrap_remaining=False).units(model)
    assert len(only_layers) == layers + blocks


def test_wrap_policy_matches_a_real_fsdp_wrap():
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    model = tiny_qwen2_vl()
    expected = LayerWrapPolicy(layer_classes()).units(model)
    with tempfile.NamedTemporaryFile() as store:
        dist.init_process_group("gloo", init_method=f"file://{store.name}", rank=0, world_size=1)
        try:
            with pytest.warns(UserWarning, match="NO_SHARD"):  # one process: FSDP keeps weights whole
                wrapped = FSDP(model, auto_wrap_policy=LayerWrapPolicy(layer_classes()), use_orig_params=True, device_id=torch.device("cpu"))
            units = [n.replace("_fsdp_wrapped_module.", "") for n, m in wrapped.named_modules() if isinstance(m, FSDP) and n]
            logits = wrapped(input_ids=torch.tensor([[7, 8, 9]])).logits
        finally:
            dist.destroy_process_group()
    assert sorted(units) == sorted(expected)
    assert logits.shape == (1, 3, 64)


def test_fsdp_strategy_settings():
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import ShardingStrategy

    strategy = fsdp_strategy(sharding_strategy="SHARD_GRAD_OP", activation_checkpointing=True)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.sharding_strategy == ShardingStrategy.SHARD_GRAD_OP
    assert isinstance(strategy.kwargs["auto_wrap_policy"], LayerWrapPolicy) and strategy.kwargs["use_orig_params"] is True
    checkpointed = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes
    assert {cls.__name__ for cls in checkpointed} == {cls.__name__ for cls in layer_classes()}
    assert fsdp_strategy(activation_checkpointing=False)._activation_checkpointing_kwargs == {}
    with pytest.raises(ValueError, match="sharding_strategy"):
        fsdp_strategy(sharding_strategy="ZERO3")


def test_deepspeed_strategy_checks_settings_and_says_how_to_install():
    with pytest.raises(ValueError, match="ZeRO stages"):
        deepspeed_strategy(stage=4)
    with pytest.raises(ValueError, match="needs ZeRO stage 3"):
        deepspeed_strategy(stage=2, offload_parameters=True)
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install deepspeed"):
            deepspeed_strategy(stage=3, offload_parameters=True)
    else:  # pragma: no cover - GPU machines with deepspeed
        from lightning.pytorch.strategies import DeepSpeedStrategy

        assert isinstance(deepspeed_strategy(stage=3, offload_parameters=True), DeepSpeedStrategy)


# ids are not the bare names: conftest skips any test whose keywords contain "gpu".
@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp", "fsdp", "deepspeed"], ids=lambda p: f"trainer_{p}")
def test_trainer_presets_compose_and_build_their_strategy(preset):
    import hydra

    from tests.train_config import compose_train

    cfg = compose_train([f"trainer={preset}"])
    assert cfg.trainer.use_distributed_sampler is False and cfg.trainer.reload_dataloaders_every_n_epochs == 1
    strategy = cfg.trainer.get("strategy")
    if preset == "fsdp":
        assert type(hydra.utils.instantiate(strategy)).__name__ == "FSDPStrategy"
    if preset == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError:  # Hydra wraps the error; the message still says what to install
            with pytest.raises(hydra.errors.InstantiationException, match="pip install deepspeed"):
                hydra.utils.instantiate(strategy)


# ---- the HF engine and sharded weights --------------------------------------------------------


class FullyShardedDataParallel(nn.Module):
    """Looks like an FSDP unit to `sharded_parameters` (class name + sharding_strategy)."""

    def __init__(self, strategy: str):
        super().__init__()
        from torch.distributed.fsdp import ShardingStrategy

        self.sharding_strategy = ShardingStrategy[strategy]
        self.inner = nn.Linear(2, 2)


def test_sharded_parameters_detects_fsdp_and_zero3():
    assert not sharded_parameters(nn.Sequential(nn.Linear(2, 2)))
    assert sharded_parameters(nn.Sequential(FullyShardedDataParallel("FULL_SHARD")))
    assert not sharded_parameters(nn.Sequential(FullyShardedDataParallel("NO_SHARD")))
    zero3 = nn.Linear(2, 2)
    zero3.weight.ds_id = 0  # DeepSpeed ZeRO-3 marks its partitioned parameters
    assert sharded_parameters(nn.Sequential(zero3))


def test_hf_engine_refuses_to_decode_with_sharded_weights():
    model = nn.Sequential(FullyShardedDataParallel("FULL_SHARD"))
    engine = HFEngine(lambda: model, encoder=None)  # refused before the encoder is used
    params = SamplingParams(greedy=True, temperature=0.0, top_p=1.0, max_new_tokens=2, stop_ids=frozenset({1}))
    with pytest.raises(RuntimeError, match="policy.engine=vllm"):
        engine.generate([], params, torch.Generator())


# ---- calling the policy between training steps (issue 20) -------------------------------------


class _Holder(nn.Module):
    """A LightningModule's shape: the model under `.policy`, wrapped whole by the FSDP root."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.policy = model


def _inner_unit_then_root(prepare: bool) -> list[bool | None]:
    """Wrap a tiny Qwen2-VL in FSDP (one process), call an inner unit first (as a rollout does),
    then the root (as the first training step does); returns the inner units' `_is_root`."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from steprl.lightning.strategies import initialise_fsdp_root, run_through_root

    holder = _Holder(tiny_qwen2_vl())
    with tempfile.NamedTemporaryFile() as store:
        dist.init_process_group("gloo", init_method=f"file://{store.name}", rank=0, world_size=1)
        try:
            with pytest.warns(UserWarning, match="NO_SHARD"):
                root = FSDP(holder, auto_wrap_policy=LayerWrapPolicy(layer_classes()), use_orig_params=True, device_id=torch.device("cpu"))
            if prepare:
                assert initialise_fsdp_root(root, holder) is True
                assert initialise_fsdp_root(root, holder) is False  # once is enough
            with torch.no_grad():
                holder.policy.model.language_model(input_ids=torch.tensor([[7, 8]]))  # the rollout: inner units directly
            run_through_root(root, holder, lambda ids: holder.policy(input_ids=ids).logits.sum(), torch.tensor([[7, 8, 9]])).backward()
            inner = [m._is_root for m in root.modules() if isinstance(m, FSDP) and m is not root]
        finally:
            dist.destroy_process_group()
    return inner


def test_an_inner_fsdp_unit_called_first_breaks_the_first_training_step():
    with pytest.raises(AssertionError, match="`_is_root` should not have been set yet"):
        _inner_unit_then_root(prepare=False)


def test_initialising_the_root_first_makes_inner_calls_safe():
    inner = _inner_unit_then_root(prepare=True)
    assert inner and all(flag is False for flag in inner)


class _Engine:
    def __init__(self):
        self.synced = 0

    def sync_weights(self) -> bool:
        self.synced += 1
        return True


def test_prepare_policy_for_rollouts_without_fsdp_syncs_the_engine():
    from types import SimpleNamespace

    from steprl.lightning.strategies import prepare_policy_for_rollouts

    policy = nn.Linear(2, 2)
    policy.engine = _Engine()
    module = _Holder(policy).train()
    trainer = SimpleNamespace(strategy=SimpleNamespace(model=module), lightning_module=module)
    assert prepare_policy_for_rollouts(trainer) is policy
    assert policy.engine.synced == 1 and module.training  # the mode is given back


def test_doubled_activation_checkpointing_is_turned_off():
    from types import SimpleNamespace

    from steprl.lightning.strategies import disable_double_checkpointing

    model = tiny_qwen2_vl()
    name = "activation_checkpointing" if hasattr(model, "is_activation_checkpointing") else "gradient_checkpointing"
    getattr(model, f"{name}_enable")()
    assert not disable_double_checkpointing(SimpleNamespace(_activation_checkpointing_kwargs={}), model)
    assert getattr(model, f"is_{name}")
    strategy = fsdp_strategy(activation_checkpointing=True)
    with pytest.warns(UserWarning, match="policy.gradient_checkpointing"):
        assert disable_double_checkpointing(strategy, model)
    assert not getattr(model, f"is_{name}")


def test_policy_for_round_runs_the_block_in_the_training_steps_precision_under_fsdp(monkeypatch):
    from contextlib import contextmanager
    from types import SimpleNamespace

    from steprl.lightning import strategies

    entered = []

    @contextmanager
    def autocast_stand_in():
        entered.append("in")
        yield
        entered.append("out")

    policy = nn.Linear(2, 2)
    policy.engine = _Engine()
    module = _Holder(policy)
    plugin = SimpleNamespace(forward_context=autocast_stand_in)
    trainer = SimpleNamespace(strategy=SimpleNamespace(model=module, precision_plugin=plugin), lightning_module=module)
    with strategies.policy_for_round(trainer) as got:  # not FSDP: today's behaviour, no context
        assert got is policy and entered == []
    monkeypatch.setattr(strategies, "fsdp_root", lambda model: model)
    monkeypatch.setattr(strategies, "initialise_fsdp_root", lambda root, module: True)
    with strategies.policy_for_round(trainer):
        assert entered == ["in", "out", "in"]  # the engine's push + probe, then the round
    assert entered[-1] == "out" and policy.engine.synced == 2
