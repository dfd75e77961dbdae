"""VLMPolicy on the tiny checkpoint: generation vs training log-probs, determinism, LoRA, saving, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steprl.policy.tiny import cached_tiny_checkpoint
from steprl.policy.vlm import CheckpointError, VLMPolicy
from steprl.types import Dialogue, DialogueTurn

CORPUS = [
    "Click the Save button",
    "Open the Mail app and press Send",
    "Action: click(start_box='(112,56)')",
    "Action: left_double(start_box='(20,30)')",
    "Action: type(content='hello\\n')",
    "Action: finished()",
] * 8

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    # Shared by every policy test file of the session: built once, reused by path.
    return cached_tiny_checkpoint(tmp_path_factory.getbasetemp() / "policy-tiny", CORPUS, vocab_size=400)


@pytest.fixture(scope="module")
def policy(tiny_dir) -> VLMPolicy:
    return VLMPolicy(str(tiny_dir), max_new_tokens=10, seed=0)


def screenshot(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(280, 448, 3), dtype=np.uint8)


def step_context(seed: int, history: int = 3) -> Dialogue:
    """One screenshot + `history` text responses, the current turn empty (to generate)."""
    turns = [DialogueTurn(None, f"Action: click(start_box='({10 * i + seed},{i})')") for i in range(history)]
    return Dialogue("Click the Save button" if seed % 2 else "Open the Mail app and press Send", turns + [DialogueTurn(screenshot(seed))])


def with_response(dialogue: Dialogue, generation) -> Dialogue:
    last = dialogue.turns[-1]
    current = DialogueTurn(last.screenshot, generation.text, generation.token_ids, trainable=True)
    return Dialogue(dialogue.instruction, dialogue.turns[:-1] + [current], a11y=dialogue.a11y)


def target_values(logp: torch.Tensor, batch: dict, row: int) -> np.ndarray:
    return logp[row][batch["target_mask"][row]].detach().numpy()


# ---- generation vs the training path -------------------------------------------------------------


def test_generate_logprobs_match_training_logprobs_for_step_contexts(policy):
    contexts = [step_context(s) for s in range(4)]
    generations = policy.generate(contexts)
    batch = policy.collate([with_response(d, g) for d, g in zip(contexts, generations)])
    logp, _ = policy.token_logprobs(batch)
    assert logp.requires_grad
    for row, generation in enumerate(generations):
        assert len(generation.token_ids) == len(generation.logprobs) > 0
        np.testing.assert_allclose(target_values(logp, batch, row), generation.logprobs, atol=1e-4)
    # nothing outside the targets
    assert torch.all(logp[~batch["target_mask"]] == 0)


def test_generate_logprobs_match_for_whole_trajectories(policy):
    """Several images and several trainable turns: each turn generated with the earlier turns'
    ids as context, then the whole trajectory recomputed at once."""
    trajectories = []
    for seed in (10, 11):
        turns: list[DialogueTurn] = []
        logprobs: list[float] = []
        for t in range(3):
            context = Dialogue("Click the Save button", turns + [DialogueTurn(screenshot(seed + 100 * t))])
            (generation,) = policy.generate([context])
            turns.append(DialogueTurn(context.turns[-1].screenshot, generation.text, generation.token_ids, trainable=True))
            logprobs.extend(generation.logprobs)
        trajectories.append((Dialogue("Click the Save button", turns), logprobs))
    batch = policy.collate([d for d, _ in trajectories])
    assert batch["image_grid_thw"].shape[0] == 6
    logp, _ = policy.token_logprobs(batch)
    for row, (_, logprobs) in enumerate(trajectories):
        np.testing.assert_allclose(target_values(logp, batch, row), logprobs, atol=1e-4)


def test_entropy_matches_a_full_softmax(policy):
    contexts = [step_context(1)]
    (generation,) = policy.generate(contexts, greedy=True)
    batch = policy.collate([with_response(contexts[0], generation)])
    logp, entropy = policy.token_logprobs(batch, with_entropy=True)
    with torch.no_grad():
        full = policy.hf_model(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "pixel_values", "image_grid_thw")})
    logits = full.logits[0, :-1].float()
    logits[:, list(policy.disallowed_ids)] = float("-inf")  # π_θ never emits layout tokens
    log_probs = torch.log_softmax(logits, dim=-1)
    positions = batch["target_mask"][0].nonzero().squeeze(-1)
    allowed = [i for i in range(logits.shape[-1]) if i not in policy.disallowed_ids]
    expected = -(log_probs.exp() * log_probs)[:, allowed].sum(-1)[positions - 1]
    np.testing.assert_allclose(entropy[0, positions].detach().numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        logp[0, positions].detach().numpy(), log_probs[positions - 1, batch["input_ids"][0, positions]].numpy(), atol=1e-5
    )


def test_truncated_generation_trains_on_exactly_the_sampled_tokens(tiny_dir):
    short = VLMPolicy(str(tiny_dir), max_new_tokens=3, seed=1)
    contexts = [step_context(s) for s in range(3)]
    generations = short.generate(contexts)
    assert all(len(g.token_ids) <= 3 for g in generations)
    batch = short.collate([with_response(d, g) for d, g in zip(contexts, generations)])
    logp, _ = short.token_logprobs(batch)
    for row, generation in enumerate(generations):
        assert int(batch["target_mask"][row].sum()) == len(generation.token_ids)
        np.testing.assert_allclose(target_values(logp, batch, row), generation.logprobs, atol=1e-4)


def test_layout_tokens_are_never_generated_and_rejected_in_responses(policy):
    layout = set(policy.disallowed_ids)
    assert {policy.encoder.image_token_id, policy.encoder.vision_start_id, policy.encoder.im_start_id} <= layout
    for generation in policy.generate([step_context(s) for s in range(8)], temperature=5.0):
        assert not layout & set(generation.token_ids)
    bad = Dialogue("x", [DialogueTurn(screenshot(0), "Action: <|image_pad|>", trainable=True)])
    with pytest.raises(ValueError, match="layout tokens"):
        policy.collate([bad])


def test_text_is_the_decoded_ids_without_special_tokens(policy):
    for generation in policy.generate([step_context(s) for s in range(3)]):
        assert generation.text == policy.tokenizer.decode(list(generation.token_ids), skip_special_tokens=True)
        assert "<|im_end|>" not in generation.text
        stops = [i for i in generation.token_ids if i in policy.stop_ids]
        assert stops in ([], [generation.token_ids[-1]])  # at most one stop token, and last


# ---- determinism and batching -------------------------------------------------------------------


def test_generate_is_deterministic_for_a_seed(tiny_dir):
    contexts = [step_context(s) for s in range(3)]
    a = VLMPolicy(str(tiny_dir), max_new_tokens=10, seed=7)
    b = VLMPolicy(str(tiny_dir), max_new_tokens=10, seed=7)
    first = [a.generate(contexts), a.generate(contexts)]
    assert [b.generate(contexts), b.generate(contexts)] == first
    assert first[0] != first[1]  # the stream advances between calls
    a.reseed()
    assert a.generate(contexts) == first[0]
    c = VLMPolicy(str(tiny_dir), max_new_tokens=10, seed=8)
    assert c.generate(contexts) != first[0]


def test_batched_greedy_equals_one_by_one(policy):
    contexts = [step_context(s, history=s % 4) for s in range(5)]  # different lengths -> left padding
    batched = policy.generate(contexts, greedy=True)
    single = [policy.generate([c], greedy=True)[0] for c in contexts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_logprobs_are_temperature_one_whatever_the_sampling_temperature(policy):
    context = step_context(3)
    (cold,) = policy.generate([context], temperature=0.3)
    batch = policy.collate([with_response(context, cold)])
    logp, _ = policy.token_logprobs(batch)
    np.testing.assert_allclose(target_values(logp, batch, 0), cold.logprobs, atol=1e-4)


def test_generate_restores_training_mode(policy):
    policy.train()
    policy.generate([step_context(0)])
    assert policy.model.training
    policy.eval()


# ---- LoRA --------------------------------------------------------------------------------------


def test_lora_trains_only_adapters_and_reference_is_the_base_model(tiny_dir):
    base = VLMPolicy(str(tiny_dir), max_new_tokens=8)
    tuned = VLMPolicy(str(tiny_dir), max_new_tokens=8, lora=LORA)
    names = [n for n, p in tuned.model.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert not any("visual" in n for n in names)  # language model only by default
    assert sum(p.numel() for p in tuned.trainable_parameters()) < 0.1 * sum(p.numel() for p in tuned.parameters())

    contexts = [step_context(s) for s in range(3)]
    samples = [with_response(d, g) for d, g in zip(contexts, base.generate(contexts, greedy=True))]
    batch = tuned.collate(samples)
    base_logp, _ = base.token_logprobs(batch)
    np.testing.assert_allclose(tuned.reference_logprobs(batch).numpy(), base_logp.detach().numpy(), atol=1e-5)

    frozen = {n: p.detach().clone() for n, p in tuned.model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in tuned.model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.Adam(tuned.trainable_parameters(), lr=1e-2)
    for _ in range(3):
        logp, _ = tuned.token_logprobs(batch)
        loss = -(logp.sum() / batch["target_mask"].sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = dict(tuned.model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen.items())
    assert any(not torch.equal(after[n], v) for n, v in adapters.items() if ".lora_B." in n)
    # the reference stays the base model while the policy moved
    np.testing.assert_allclose(tuned.reference_logprobs(batch).numpy(), base_logp.detach().numpy(), atol=1e-5)
    moved, _ = tuned.token_logprobs(batch)
    assert (moved - base_logp).abs().max() > 1e-3


def test_reference_without_lora_needs_keep_reference(tiny_dir, policy):
    batch = policy.collate([Dialogue("x", [DialogueTurn(screenshot(0), "Action: finished()", trainable=True)])])
    with pytest.raises(RuntimeError, match="keep_reference=true"):
        policy.reference_logprobs(batch)
    kept = VLMPolicy(str(tiny_dir), keep_reference=True)
    start, _ = kept.token_logprobs(batch)
    with torch.no_grad():
        for p in kept.trainable_parameters():
            p.add_(0.01)
    assert sum(1 for _ in kept.parameters()) == sum(1 for _ in policy.parameters())  # the copy is not a parameter
    np.testing.assert_allclose(kept.reference_logprobs(batch).numpy(), start.detach().numpy(), atol=1e-6)


def test_freeze_vision_tower(tiny_dir):
    frozen = VLMPolicy(str(tiny_dir), freeze_vision_tower=True)
    names = {n for n, p in frozen.model.named_parameters() if p.requires_grad}
    assert names and not any(".visual." in f".{n}" for n in names)
    assert any("lm_head" in n for n in names)


# ---- saving and loading -------------------------------------------------------------------------


def _batch_and_reference(policy: VLMPolicy):
    contexts = [step_context(s) for s in range(2)]
    samples = [with_response(d, g) for d, g in zip(contexts, policy.generate(contexts, greedy=True))]
    return samples


def test_save_pretrained_round_trip(tiny_dir, policy, tmp_path):
    samples = _batch_and_reference(policy)
    batch = policy.collate(samples)
    expected, _ = policy.token_logprobs(batch)
    policy.save_pretrained(tmp_path / "saved")
    loaded = VLMPolicy(pretrained=str(tmp_path / "saved"))
    assert loaded.template.name == "tiny"
    got, _ = loaded.token_logprobs(loaded.collate(samples))
    np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), atol=1e-5)


def test_lora_save_pretrained_merges_and_adapters_round_trip(tiny_dir, tmp_path):
    tuned = VLMPolicy(str(tiny_dir), lora=LORA, seed=2)
    with torch.no_grad():
        for name, p in tuned.model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    samples = _batch_and_reference(tuned)
    batch = tuned.collate(samples)
    expected, _ = tuned.token_logprobs(batch)

    tuned.save_pretrained(tmp_path / "merged")
    merged = VLMPolicy(str(tmp_path / "merged"))
    got, _ = merged.token_logprobs(merged.collate(samples))
    np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), atol=1e-5)

    tuned.save_adapter(tmp_path / "adapter")
    fresh = VLMPolicy(str(tiny_dir), lora=LORA, seed=99)
    fresh.load_adapter(tmp_path / "adapter")
    got, _ = fresh.token_logprobs(batch)
    np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), atol=1e-6)

    other = VLMPolicy(str(tiny_dir), lora={"r": 2, "alpha": 8})
    with pytest.raises(ValueError, match="set policy.lora to match"):
        other.load_adapter(tmp_path / "adapter")


def test_adapter_methods_need_lora(policy, tmp_path):
    with pytest.raises(RuntimeError, match="needs LoRA adapters"):
        policy.save_adapter(tmp_path / "a")


# ---- user errors ---------------------------------------------------------------------------------


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        VLMPolicy(str(tmp_path / "nowhere" / "tiny"))


def test_directory_without_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        VLMPolicy(str(tmp_path))


def test_hub_name_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline") as error:
        VLMPolicy("steprl-test/not-a-cached-model")
    assert "huggingface-cli download steprl-test/not-a-cached-model" in str(error.value)


def test_bad_settings_give_clear_errors(tiny_dir):
    with pytest.raises(ValueError, match="policy.dtype must be one of"):
        VLMPolicy(str(tiny_dir), dtype="fp8")
    with pytest.raises(ValueError, match="Unknown policy.lora keys"):
        VLMPolicy(str(tiny_dir), lora={"rank": 4})
    with pytest.raises(ValueError, match="Unknown generation engine 'sglang'"):
        VLMPolicy(str(tiny_dir), engine="sglang")
    with pytest.raises(ValueError, match="Unknown prompt template"):
        VLMPolicy(str(tiny_dir), template="nope")


def test_model_image_size_and_pixel_budget_override(tiny_dir, policy):
    assert policy.model_image_size((448, 280)) == (224, 140)
    full = VLMPolicy(str(tiny_dir), max_pixels=448 * 280)
    assert full.model_image_size((448, 280)) == (448, 280)
    encoded = full.encoder.encode(step_context(0), add_generation_prompt=True)
    assert encoded.image_grid_thw.tolist() == [[1, 20, 32]]  # 280/14 x 448/14 patches -> 160 image tokens


def test_policy_pickles_for_spawned_workers(policy):
    import pickle

    samples = _batch_and_reference(policy)
    batch = policy.collate(samples)
    copy = pickle.loads(pickle.dumps(policy))
    np.testing.assert_allclose(copy.token_logprobs(batch)[0].detach().numpy(), policy.token_logprobs(batch)[0].detach().numpy())
    copy.reseed(0)
    assert copy.generate([step_context(2)], greedy=True)[0] == policy.generate([step_context(2)], greedy=True)[0]
