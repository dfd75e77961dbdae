"""The vLLM engine adapter on CPU, against a fake `vllm` (tests/fake_vllm.py) backed by the tiny model.

Checked: the import guard and its message; prompts (image placeholders collapsed, images rebuilt
exactly from the encoder's patches); the ids and log-probs vLLM returns agree with the trainer's;
one LoRA push per weight change (fresh directory, new LoRARequest id, old one removed); sleep
before training and wake before generation; the probe check passes when vLLM serves the trained
adapter and names the stale-adapter failure when it does not. And what the real vLLM imposes (the
fake models it): RANK / LOCAL_RANK for the external launcher, float16 / bfloat16 with LoRA, no
vision-tower LoRA, cached adapters for a reused id; pushes on the optimiser-step event, agreed over
ranks; ZeRO-3 slices gathered before the adapter is saved.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from steprl.errors import ConfigError, MissingDependencyError
from steprl.policy import vllm_engine
from steprl.policy.tiny import cached_tiny_checkpoint
from steprl.policy.vlm import VLMPolicy
from steprl.policy.vllm_engine import (
    VLLMSettings,
    WeightSyncError,
    launcher_environment,
    vllm_dtype,
    collapse_image_tokens,
    compare_probe,
    images_from_patches,
    lora_rank_slot,
    truncate_at_stop,
    vllm_available,
)
from steprl.types import Dialogue, DialogueTurn
from tests import fake_vllm

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ["Click the Save button", "Action: click(start_box='(112,56)')", "Action: finished()", "Thought: the menu"] * 8
LORA = {"r": 4, "alpha": 8}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return cached_tiny_checkpoint(tmp_path_factory.getbasetemp() / "vllm-tiny", CORPUS, vocab_size=400)


def screenshots(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (280, 448, 3), dtype=np.uint8) for _ in range(count)]


def prompts(count: int = 4) -> list[Dialogue]:
    return [
        Dialogue("Click the Save button", [DialogueTurn(None, "Action: finished()")] * (i % 2) + [DialogueTurn(shot)])
        for i, shot in enumerate(screenshots(count))
    ]


def vllm_policy(tiny_dir, **vllm_options) -> VLMPolicy:
    options = {"probe_tolerance": 0.05, **vllm_options}
    return VLMPolicy(str(tiny_dir), lora=LORA, engine="vllm", vllm=options, max_new_tokens=6, seed=0)


def perturb_lora(policy: VLMPolicy, scale: float, seed: int = 0) -> None:
    """Stands in for an optimiser step (in-place, like one): the probe's log-probs move."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


# ---- pure helpers ---------------------------------------------------------------------------


def test_collapse_image_tokens_keeps_one_placeholder_per_image():
    # ids [a, V, I, I, I, I, E, b, V, I, I, E] with I = 9: each run of I becomes one I
    assert collapse_image_tokens([1, 3, 9, 9, 9, 9, 4, 2, 3, 9, 9, 4], 9) == [1, 3, 9, 4, 2, 3, 9, 4]
    assert collapse_image_tokens([1, 2], 9) == [1, 2]


def test_truncate_at_stop_keeps_the_stop_token_and_its_logprob():
    # stop ids {2}: [5, 6, 2, 7] -> [5, 6, 2]; no stop -> everything
    assert truncate_at_stop([5, 6, 2, 7], [-1.0, -2.0, -0.5, -3.0], {2}) == ((5, 6, 2), (-1.0, -2.0, -0.5))
    assert truncate_at_stop([5, 6], [-1.0, -2.0], {2}) == ((5, 6), (-1.0, -2.0))


def test_lora_rank_slot_rounds_up_to_a_rank_vllm_serves():
    assert [lora_rank_slot(r) for r in (1, 8, 9, 64, 65)] == [8, 8, 16, 64, 128]
    with pytest.raises(ValueError, match="largest LoRA rank"):
        lora_rank_slot(1000)


def test_compare_probe_numbers_worked_by_hand():
    # engine [-1.0, -2.0], trainer [-1.2, -2.4], initial [-1.0, -2.1]:
    # gap = (0.2 + 0.4)/2 = 0.3; moved = (0.2 + 0.3)/2 = 0.25; gap_to_initial = (0 + 0.1)/2 = 0.05
    check = compare_probe([-1.0, -2.0], [-1.2, -2.4], [-1.0, -2.1], tolerance=0.1)
    assert check.gap == pytest.approx(0.3) and check.moved == pytest.approx(0.25) and check.gap_to_initial == pytest.approx(0.05)
    assert not check.ok and check.stale and "still serves the initial policy" in check.message()
    # same gap but the engine is not closer to the initial policy: off, not stale
    other = compare_probe([-1.5, -2.8], [-1.2, -2.4], [-1.0, -2.1], tolerance=0.1)
    assert not other.ok and not other.stale and "differ from the trainer's" in other.message()
    assert compare_probe([-1.0], [-1.05], [-1.0], tolerance=0.1).ok  # 0.05 <= 0.1
    with pytest.raises(ValueError):
        compare_probe([], [], [], 0.1)


def test_settings_reject_unknown_and_bad_options():
    with pytest.raises(ValueError, match="Unknown policy.vllm options"):
        VLLMSettings.from_options({"gpu_mem": 0.5})
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        VLLMSettings.from_options({"gpu_memory_utilization": 1.5})
    with pytest.raises(ValueError, match="on_mismatch"):
        VLLMSettings.from_options({"on_mismatch": "ignore"})


def test_images_rebuilt_from_patches_give_the_same_pixel_values(tiny_dir):
    policy = VLMPolicy(str(tiny_dir))
    encoder = policy.encoder
    originals = screenshots(2, seed=3)
    pixel_values, grids = encoder.process_images(originals)
    rebuilt = images_from_patches(pixel_values, torch.tensor(grids), encoder.image_processor)
    assert [im.shape for im in rebuilt] == [(140, 224, 3)] * 2  # the 224x140 the tiny model sees
    again, again_grids = encoder.process_images(rebuilt)
    assert again_grids == grids
    assert torch.equal(again, pixel_values)  # bit for bit: vLLM sees exactly the trainer's image


# ---- the import guard -----------------------------------------------------------------------


@pytest.mark.skipif(vllm_available(), reason="vllm is installed here")
def test_vllm_engine_without_vllm_says_how_to_install(tiny_dir):
    with pytest.raises(MissingDependencyError, match=r"pip install 'steprl\[vllm\]'"):
        VLMPolicy(str(tiny_dir), lora=LORA, engine="vllm")


def test_vllm_engine_needs_lora(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    with pytest.raises(ValueError, match="needs LoRA"):
        VLMPolicy(str(tiny_dir), engine="vllm")


def test_cpu_code_paths_never_import_vllm(tiny_dir):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from steprl.policy.vlm import VLMPolicy
        from steprl.types import Dialogue, DialogueTurn
        import steprl.lightning.strategies, steprl.policy.vllm_engine
        policy = VLMPolicy({str(tiny_dir)!r}, lora={{"r": 4, "alpha": 8}}, max_new_tokens=3)
        policy.generate([Dialogue("x", [DialogueTurn(np.zeros((280, 448, 3), np.uint8))])])
        assert "vllm" not in sys.modules, "vllm was imported"
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- the engine against the fake ------------------------------------------------------------


def test_engine_starts_lazily_with_the_policy_settings(tiny_dir, monkeypatch):
    state = fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir, gpu_memory_utilization=0.3, max_model_len=2048)
    assert state.events == []  # constructing a policy never starts vLLM
    policy.generate(prompts(1))
    kwargs = state.events[0][1]
    assert kwargs["model"] == str(tiny_dir) and kwargs["dtype"] == "bfloat16" and kwargs["enable_lora"] is True
    assert kwargs["max_lora_rank"] == 8 and kwargs["enable_sleep_mode"] is True and kwargs["gpu_memory_utilization"] == 0.3
    assert kwargs["max_model_len"] == 2048 and kwargs["logprobs_mode"] == "raw_logprobs"
    assert kwargs["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 224 * 140}


def test_under_ddp_each_rank_runs_its_engine_in_the_trainers_process_group(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    assert "distributed_executor_backend" not in policy.engine.llm_arguments()
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    kwargs = policy.engine.llm_arguments()
    assert kwargs["distributed_executor_backend"] == "external_launcher" and kwargs["tensor_parallel_size"] == 1


def test_rollout_ids_and_logprobs_agree_with_the_trainer(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    perturb_lora(policy, 0.05)  # a non-trivial adapter, so serving it matters
    dialogues = prompts(4)
    generations = policy.generate(dialogues)
    assert policy.engine.last_check is not None and policy.engine.last_check.ok
    samples = [
        Dialogue(d.instruction, d.turns[:-1] + [DialogueTurn(d.turns[-1].screenshot, g.text, g.token_ids, trainable=True)])
        for d, g in zip(dialogues, generations)
    ]
    batch = policy.collate(samples)
    logp, _ = policy.token_logprobs(batch)
    for row, generation in enumerate(generations):
        assert 1 <= len(generation.token_ids) <= 6
        trained = logp[row][batch["target_mask"][row]].detach().numpy()
        # raw vLLM log-probs vs the trainer's with layout tokens masked: log(1 - p_layout) apart at most
        np.testing.assert_allclose(trained, generation.logprobs, atol=0.05)


def test_same_seed_same_samples(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    first = vllm_policy(tiny_dir).generate(prompts(3))
    second = vllm_policy(tiny_dir).generate(prompts(3))
    assert [g.token_ids for g in first] == [g.token_ids for g in second]


def test_one_push_per_weight_change_and_sleep_around_training(tiny_dir, monkeypatch):
    state = fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    engine = policy.engine
    policy.generate(prompts(2))
    policy.generate(prompts(2))  # no update in between: no new push
    assert engine.pushes == 1
    first_dir = engine.lora_request.lora_path

    batch = policy.collate([Dialogue("x", [DialogueTurn(screenshots(1)[0], "Action: finished()", trainable=True)])])
    logp, _ = policy.token_logprobs(batch)  # the training path: vLLM must sleep first
    assert engine.asleep and state.events[-1] == ("sleep", 1)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-2)
    (-logp.sum()).backward()
    optimizer.step()
    engine.on_optimizer_step()

    policy.generate(prompts(2))
    assert engine.pushes == 2 and engine.lora_request.lora_int_id == 2 and engine.lora_request.lora_path != first_dir
    names = [event[0] for event in state.events]
    sleep_at = names.index("sleep")
    assert names[sleep_at:sleep_at + 4] == ["sleep", "wake_up", "reset_prefix_cache", "add_lora"]
    assert ("remove_lora", 1) in state.events
    generate_events = [e for e in state.events if e[0] == "generate"]
    assert generate_events[-1][2] == 2  # the last rollout used the new adapter
    kept = list(engine._adapter_dirs)  # the current adapter and the one before it, in case vLLM loads lazily
    assert kept == [first_dir, engine.lora_request.lora_path] and all(Path(d, "adapter_config.json").is_file() for d in kept)
    engine.close()
    assert not any(Path(d).exists() for d in kept)


def test_probe_check_raises_when_vllm_keeps_the_initial_adapter(tiny_dir, monkeypatch):
    state = fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    policy.generate(prompts(1))  # first push: the initial adapter
    state.serve_first_adapter_only = True
    perturb_lora(policy, 0.5, seed=1)  # training moved the policy a lot
    with pytest.raises(WeightSyncError, match="still serves the initial policy"):
        policy.generate(prompts(1))


def test_probe_check_can_warn_instead(tiny_dir, monkeypatch):
    state = fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir, on_mismatch="warn")
    policy.generate(prompts(1))
    state.serve_first_adapter_only = True
    perturb_lora(policy, 0.5, seed=1)
    with pytest.warns(UserWarning, match="still serves the initial policy"):
        policy.generate(prompts(1))
    assert not policy.engine.last_check.ok


def test_in_memory_policy_needs_a_base_checkpoint_for_vllm(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    loaded = VLMPolicy(str(tiny_dir))
    policy = VLMPolicy.from_model(loaded.model, loaded.tokenizer, loaded.image_processor, lora=LORA, engine="vllm", max_new_tokens=3)
    with pytest.raises(ValueError, match="base_checkpoint"):
        policy.generate(prompts(1))
    policy.engine = policy.make_engine("vllm", base_checkpoint=str(tiny_dir), probe_tolerance=0.05)
    assert len(policy.generate(prompts(1))) == 1


def test_the_engine_is_not_pickled_with_the_policy(tiny_dir, monkeypatch):
    import pickle

    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    policy.generate(prompts(1))
    copy = pickle.loads(pickle.dumps(policy))
    assert copy.engine.llm is None and copy.engine.pushes == policy.engine.pushes


def test_ui_tars_presets_are_valid_policy_settings():
    import inspect

    import yaml

    accepted = set(inspect.signature(VLMPolicy.__init__).parameters) - {"self"}
    for name, coords in (("ui_tars_7b_dpo", "relative1000"), ("ui_tars_1_5_7b", "absolute")):
        preset = yaml.safe_load((ROOT / "conf" / "policy" / f"{name}.yaml").read_text())
        assert set(preset) - {"_target_"} <= accepted, set(preset) - accepted
        assert preset["coords"] == coords and preset["dtype"] == "bfloat16" and preset["lora"]["r"] == 64
        VLLMSettings.from_options(preset["vllm"])  # the vLLM options are all known and valid


# ---- what the real vLLM imposes (issue 20) --------------------------------------------------


def fake_distributed(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: rank)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: world)


def clear_env(monkeypatch, *names: str) -> None:
    """Unset `names` for this test, restoring them afterwards even when the code under test sets them."""
    for name in names:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)


def test_launcher_environment_comes_from_the_process_group():
    # rank 3 of 4; srun's SLURM_LOCALID=1 is the local rank when LOCAL_RANK is unset
    assert launcher_environment(3, 4, {"SLURM_LOCALID": "1"}) == {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}
    assert launcher_environment(0, 2, {"LOCAL_RANK": "0", "RANK": "0"})["LOCAL_RANK"] == "0"
    with pytest.raises(ConfigError, match="RANK=0"):
        launcher_environment(1, 2, {"LOCAL_RANK": "1", "RANK": "0"})


def test_external_launcher_engine_starts_without_rank_in_the_environment(tiny_dir, monkeypatch):
    # Lightning's launcher leaves RANK unset in its first process, srun everywhere; vLLM reads it.
    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    fake_distributed(monkeypatch, rank=1, world=2)
    clear_env(monkeypatch, "RANK", "LOCAL_RANK", "WORLD_SIZE")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    policy.engine.start()
    assert (policy.engine.llm.rank, policy.engine.llm.local_rank) == (1, 1)


def test_vllm_dtype_is_a_half_precision_one():
    assert vllm_dtype("float32", None) == "bfloat16"  # the FSDP recipe: fp32 weights, bf16 compute
    assert vllm_dtype("float32", None, bf16_supported=False) == "float16"  # e.g. a V100
    assert vllm_dtype("bfloat16", None) == "bfloat16" and vllm_dtype("float16", None) == "float16"
    assert vllm_dtype("float32", "float16") == "float16"
    with pytest.raises(ConfigError, match="bfloat16 or float16 only"):
        vllm_dtype("float32", "float32")
    with pytest.raises(ValueError, match="policy.vllm.dtype"):
        VLLMSettings.from_options({"dtype": "float32"})


def test_fake_vllm_refuses_float32_lora_like_vllm(tiny_dir, monkeypatch):
    fake = fake_vllm.install(monkeypatch)
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        sys.modules["vllm"].LLM(model=str(tiny_dir), dtype="float32", enable_lora=True)
    assert fake.instances == []


def test_vision_tower_lora_is_refused_by_a_vllm_that_would_drop_it(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    monkeypatch.setattr(vllm_engine, "_engine_accepts", lambda vllm, name: name != "enable_tower_connector_lora")
    with pytest.raises(ConfigError, match="include_vision"):
        VLMPolicy(str(tiny_dir), lora={**LORA, "include_vision": True}, engine="vllm")


def test_vision_tower_lora_is_served_where_vllm_can(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    assert "enable_tower_connector_lora" not in policy.engine.llm_arguments()
    policy = VLMPolicy(str(tiny_dir), lora={**LORA, "include_vision": True}, engine="vllm", vllm={"probe_tolerance": 0.05}, max_new_tokens=3)
    assert policy.engine.llm_arguments()["enable_tower_connector_lora"] is True
    perturb_lora(policy, 0.05)
    policy.generate(prompts(1))
    assert policy.engine.last_check.ok  # the probe's image goes through the adapted vision tower on both sides


def test_fake_vllm_drops_vision_tower_lora_like_vllm(tiny_dir, monkeypatch, tmp_path):
    fake_vllm.install(monkeypatch)
    policy = VLMPolicy(str(tiny_dir), lora={**LORA, "include_vision": True})
    perturb_lora(policy, 0.1)
    policy.save_adapter(tmp_path / "adapter")
    request = fake_vllm.LoRARequest("a", 1, str(tmp_path / "adapter"))
    dropped = sys.modules["vllm"].LLM(model=str(tiny_dir), dtype="bfloat16", enable_lora=True)._model(request)
    kept = sys.modules["vllm"].LLM(model=str(tiny_dir), dtype="bfloat16", enable_lora=True, enable_tower_connector_lora=True)._model(request)

    def vision_lora_b(model):
        return [p for n, p in model.named_parameters() if "lora_B" in n and ".visual." in n]

    assert vision_lora_b(dropped) and all(p.abs().sum() == 0 for p in vision_lora_b(dropped))
    assert all(p.abs().sum() > 0 for p in vision_lora_b(kept))


def update_without_version_bump(policy: VLMPolicy, scale: float, seed: int = 0) -> None:
    """An optimiser step as DeepSpeed makes it: the values change through another view of the
    storage (its flat buffer), so the parameters' version counters stay where they were."""
    generator = torch.Generator().manual_seed(seed)
    for param in policy.trainable_parameters():
        param.data.copy_(param.data + torch.randn(param.shape, generator=generator) * scale)


def test_a_push_follows_the_optimizer_step_even_when_no_version_counter_moves(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    engine = policy.engine
    policy.generate(prompts(1))
    assert engine.pushes == 1
    versions = [p._version for p in policy.trainable_parameters()]
    update_without_version_bump(policy, 0.5, seed=1)
    assert [p._version for p in policy.trainable_parameters()] == versions  # what DeepSpeed's update looks like
    engine.on_optimizer_step()
    assert engine.sync_weights() is True  # the start of the next round
    assert engine.pushes == 2 and engine.lora_request.lora_int_id == 2
    assert engine.last_check.ok and engine.last_check.moved > engine.settings.probe_tolerance  # serves the trained weights
    assert engine.sync_weights() is False  # nothing new: no push


def test_ranks_push_together_when_only_another_rank_stepped(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    engine = policy.engine
    engine.sync_weights()
    other_ranks_steps = 1  # another rank stepped once; this one skipped its step (no token on this rank)
    reduced = []

    def all_reduce_max(values):
        reduced.append(list(values))
        return [max(values[0], other_ranks_steps), values[1]]

    monkeypatch.setattr(vllm_engine, "agreed_max", all_reduce_max)
    assert engine.sync_weights() is True and engine.pushes == 2
    assert reduced == [[0, 0]]  # this rank's own view said "nothing changed"
    assert engine.sync_weights() is False


def test_sharded_weights_refuse_a_lone_push_inside_generate(tiny_dir, monkeypatch):
    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir)
    policy.generate(prompts(1))
    policy.engine.on_optimizer_step()
    fake_distributed(monkeypatch, rank=0, world=2)
    monkeypatch.setattr(vllm_engine, "sharded_parameters", lambda model: True)
    with pytest.raises(WeightSyncError, match="prepare_policy_for_rollouts"):
        policy.generate(prompts(1))


def test_fake_vllm_serves_the_cached_adapter_for_a_reused_id(tiny_dir, monkeypatch, tmp_path):
    # Why every push takes a new LoRARequest id: vLLM keeps serving what it loaded under an id.
    fake_vllm.install(monkeypatch)
    policy = VLMPolicy(str(tiny_dir), lora=LORA)
    policy.save_adapter(tmp_path / "first")
    perturb_lora(policy, 0.5)
    policy.save_adapter(tmp_path / "second")
    llm = sys.modules["vllm"].LLM(model=str(tiny_dir), dtype="bfloat16", enable_lora=True)
    llm.llm_engine.add_lora(fake_vllm.LoRARequest("a", 1, str(tmp_path / "first")))
    first = llm._model(fake_vllm.LoRARequest("a", 1, str(tmp_path / "first")))
    llm.llm_engine.add_lora(fake_vllm.LoRARequest("b", 1, str(tmp_path / "second")))
    assert llm._model(fake_vllm.LoRARequest("b", 1, str(tmp_path / "second"))) is first
    llm.llm_engine.add_lora(fake_vllm.LoRARequest("b", 2, str(tmp_path / "second")))
    assert llm._model(fake_vllm.LoRARequest("b", 2, str(tmp_path / "second"))) is not first


class FakeZero3:
    """`deepspeed.zero.GatheredParameters` over parameters partitioned by hand: outside the block a
    parameter holds an empty slice (as under ZeRO-3), inside it its whole value."""

    def __init__(self, whole: dict[int, torch.Tensor]):
        self.whole = whole
        self.gathered = 0

    def GatheredParameters(self, params, modifier_rank=None):  # noqa: N802 - DeepSpeed's name
        import contextlib

        @contextlib.contextmanager
        def block():
            self.gathered += 1
            for p in params:
                p.data = self.whole[p.ds_id]
            try:
                yield
            finally:
                for p in params:
                    p.data = torch.empty(0)

        return block()


def test_zero3_adapter_is_saved_from_gathered_weights(tiny_dir, monkeypatch):
    import types

    from safetensors.torch import load_file

    fake_vllm.install(monkeypatch)
    policy = vllm_policy(tiny_dir, check_weights=False)  # the trainer cannot score the probe with empty slices
    perturb_lora(policy, 0.1)
    whole = {}
    for index, param in enumerate(policy.trainable_parameters()):
        whole[index] = param.data.clone()
        param.ds_id = index
        param.data = torch.empty(0)
    zero = FakeZero3(whole)
    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(zero=zero))
    policy.generate(prompts(1))
    saved = load_file(str(Path(policy.engine.lora_request.lora_path) / "adapter_model.safetensors"))
    assert zero.gathered == 1
    assert sorted(t.numel() for t in saved.values()) == sorted(t.numel() for t in whole.values()) and min(t.numel() for t in saved.values()) > 0


def test_adapter_for_vllm_is_peft_format_even_inside_wrappers(tiny_dir, tmp_path):
    from safetensors.torch import load_file
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    from steprl.lightning.strategies import layer_classes
    from steprl.policy.vllm_engine import save_adapter_for_vllm

    policy = VLMPolicy(str(tiny_dir), lora=LORA)
    perturb_lora(policy, 0.1)
    policy.save_adapter(tmp_path / "peft")
    save_adapter_for_vllm(policy.model, str(tmp_path / "plain"))
    peft_saved, ours = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("peft", "plain"))
    assert sorted(ours) == sorted(peft_saved) and all(torch.equal(ours[k], peft_saved[k]) for k in ours)
    assert Path(tmp_path / "plain" / "adapter_config.json").is_file()

    # The wrappers FSDP's activation checkpointing inserts rename the layers: peft's own save then
    # writes an empty adapter (which vLLM serves as the initial policy); ours still writes all of it.
    apply_activation_checkpointing(policy.model, check_fn=lambda m: isinstance(m, layer_classes()))
    policy.save_adapter(tmp_path / "peft-wrapped")  # no error, no warning
    assert load_file(str(tmp_path / "peft-wrapped" / "adapter_model.safetensors")) == {}
    save_adapter_for_vllm(policy.model, str(tmp_path / "wrapped"))
    wrapped = load_file(str(tmp_path / "wrapped" / "adapter_model.safetensors"))
    assert sorted(wrapped) == sorted(peft_saved) and all(torch.equal(wrapped[k], peft_saved[k]) for k in wrapped)
