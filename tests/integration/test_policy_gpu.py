"""The policy on a CUDA GPU: generation and training log-probs agree in float32 and bfloat16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steprl.policy.tiny import cached_tiny_checkpoint
from steprl.policy.vlm import VLMPolicy
from steprl.types import Dialogue, DialogueTurn

pytestmark = pytest.mark.gpu

CORPUS = ["Click the Save button", "Action: click(start_box='(112,56)')", "Action: finished()"] * 8


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return cached_tiny_checkpoint(tmp_path_factory.getbasetemp() / "policy-tiny-gpu", CORPUS, vocab_size=400)


def contexts() -> list[Dialogue]:
    rng = np.random.default_rng(0)
    return [
        Dialogue("Click the Save button", [DialogueTurn(None, "Action: finished()")] * (i % 3) + [DialogueTurn(rng.integers(0, 256, (280, 448, 3), dtype=np.uint8))])
        for i in range(6)
    ]


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-4), ("bfloat16", 0.1)])
def test_generate_and_training_logprobs_agree_on_cuda(tiny_dir, dtype, atol):
    policy = VLMPolicy(str(tiny_dir), device="cuda", dtype=dtype, max_new_tokens=12, seed=0)
    assert policy.device.type == "cuda"
    prompts = contexts()
    generations = policy.generate(prompts)
    again = VLMPolicy(str(tiny_dir), device="cuda", dtype=dtype, max_new_tokens=12, seed=0).generate(prompts)
    assert [g.token_ids for g in again] == [g.token_ids for g in generations]  # seeded on the GPU too
    samples = [
        Dialogue(d.instruction, d.turns[:-1] + [DialogueTurn(d.turns[-1].screenshot, g.text, g.token_ids, trainable=True)])
        for d, g in zip(prompts, generations)
    ]
    batch = policy.collate(samples)
    logp, entropy = policy.token_logprobs(batch, with_entropy=True)
    assert logp.device.type == "cuda" and logp.dtype == torch.float32 and torch.isfinite(entropy).all()
    for row, generation in enumerate(generations):
        got = logp[row][batch["target_mask"][row].to(logp.device)].detach().cpu().numpy()
        np.testing.assert_allclose(got, generation.logprobs, atol=atol)
    (-logp.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in policy.trainable_parameters() if p.grad is not None)


def test_lora_reference_on_cuda(tiny_dir):
    policy = VLMPolicy(str(tiny_dir), device="cuda", dtype="bfloat16", lora={"r": 4, "alpha": 8}, gradient_checkpointing=True)
    batch = policy.collate([Dialogue("x", [DialogueTurn(np.zeros((280, 448, 3), np.uint8), "Action: finished()", trainable=True)])])
    policy.train()
    logp, _ = policy.token_logprobs(batch)
    (-logp.sum()).backward()
    assert any(p.grad is not None for p in policy.trainable_parameters())
    np.testing.assert_allclose(policy.reference_logprobs(batch).cpu().numpy(), logp.detach().cpu().numpy(), atol=1e-3)
