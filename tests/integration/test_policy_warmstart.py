"""Warm start on the tiny policy: the loss falls, results are cached and reloaded, LoRA works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steprl.policy.tiny import cached_tiny_checkpoint
from steprl.policy.vlm import VLMPolicy
from steprl.policy.warmstart import warm_start
from steprl.types import Dialogue, DialogueTurn, TrainingSample

CORPUS = [
    "Click the Save button",
    "Open the Mail app and press Send",
    "Action: click(start_box='(112,56)')",
    "Action: left_double(start_box='(20,30)')",
    "Action: type(content='hello\\n')",
    "Action: finished()",
] * 8

RESPONSES = ["Action: click(start_box='(112,56)')", "Action: left_double(start_box='(20,30)')", "Action: finished()"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return cached_tiny_checkpoint(tmp_path_factory.getbasetemp() / "policy-tiny", CORPUS, vocab_size=400)


def demos() -> list[TrainingSample]:
    """Three tasks whose right response depends on the screenshot colour."""
    samples = []
    for i, response in enumerate(RESPONSES):
        shot = np.zeros((280, 448, 3), dtype=np.uint8)
        shot[:, :, i] = 255
        dialogue = Dialogue("Click the Save button", [DialogueTurn(shot, response, trainable=True)])
        samples.append(TrainingSample(dialogue, advantage=1.0, task_id=f"t{i}"))
    return samples


def test_warm_start_fits_the_demonstrations_and_is_cached(tiny_dir, tmp_path):
    policy = VLMPolicy(str(tiny_dir), max_new_tokens=16)
    samples = demos()
    result = warm_start(policy, samples, steps=40, batch_size=3, lr=5e-3, seed=0, cache_dir=tmp_path)
    assert not result.from_cache and len(result.losses) == 40
    assert result.losses[-1] < 0.2 * result.losses[0]
    contexts = [Dialogue(s.dialogue.instruction, [DialogueTurn(s.dialogue.turns[0].screenshot)]) for s in samples]
    assert [g.text for g in policy.generate(contexts, greedy=True)] == RESPONSES

    again = VLMPolicy(str(tiny_dir), max_new_tokens=16)
    cached = warm_start(again, samples, steps=40, batch_size=3, lr=5e-3, seed=0, cache_dir=tmp_path)
    assert cached.from_cache and cached.key == result.key and cached.losses == result.losses
    trained = dict(policy.model.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in again.model.named_parameters())

    other = VLMPolicy(str(tiny_dir))
    changed = warm_start(other, samples, steps=2, batch_size=3, lr=3e-3, seed=0, cache_dir=tmp_path)
    assert not changed.from_cache and changed.key != result.key


def test_warm_start_is_seeded(tiny_dir):
    a, b = VLMPolicy(str(tiny_dir)), VLMPolicy(str(tiny_dir))
    la = warm_start(a, demos(), steps=5, batch_size=2, lr=1e-3, seed=3).losses
    lb = warm_start(b, demos(), steps=5, batch_size=2, lr=1e-3, seed=3).losses
    assert la == lb


def test_warm_start_with_lora_changes_only_adapters(tiny_dir, tmp_path):
    policy = VLMPolicy(str(tiny_dir), lora={"r": 8, "alpha": 16, "dropout": 0.1})
    frozen = {n: p.detach().clone() for n, p in policy.model.named_parameters() if not p.requires_grad}
    result = warm_start(policy, demos(), steps=30, batch_size=3, lr=5e-3, seed=0, cache_dir=tmp_path)
    assert result.losses[-1] < result.losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in policy.model.named_parameters() if n in frozen)

    again = VLMPolicy(str(tiny_dir), lora={"r": 8, "alpha": 16, "dropout": 0.1})
    assert warm_start(again, demos(), steps=30, batch_size=3, lr=5e-3, seed=0, cache_dir=tmp_path).from_cache
    trained = dict(policy.model.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in again.model.named_parameters())


def test_warm_start_errors(tiny_dir):
    policy = VLMPolicy(str(tiny_dir))
    with pytest.raises(ValueError, match="at least one demonstration"):
        warm_start(policy, [], steps=1)
    untrainable = [TrainingSample(Dialogue("x", [DialogueTurn(None, "Action: wait()")]), advantage=1.0, task_id="t")]
    with pytest.raises(ValueError, match="no target tokens"):
        warm_start(policy, untrainable, steps=1)
