"""Token selection: greedy, temperature and nucleus (top-p) sampling."""

from __future__ import annotations

import math

import torch

from steprl.policy.engines import SamplingParams, select_tokens


def params(**kwargs) -> SamplingParams:
    base = dict(greedy=False, temperature=1.0, top_p=1.0, max_new_tokens=1, stop_ids=frozenset())
    base.update(kwargs)
    return SamplingParams(**base)


def draws(logits: torch.Tensor, p: SamplingParams, n: int = 4000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return select_tokens(logits.expand(n, -1), p, generator)


def test_greedy_and_zero_temperature_take_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    generator = torch.Generator().manual_seed(0)
    assert select_tokens(logits, params(greedy=True), generator).tolist() == [1, 0]
    assert select_tokens(logits, params(temperature=0.0), generator).tolist() == [1, 0]


def test_top_p_keeps_the_smallest_set_reaching_p():
    # probs 0.5, 0.3, 0.2 (logits = log probs). Probability mass ranked above each token:
    # 0, 0.5, 0.8. top_p = 0.6 drops tokens with mass-above >= 0.6 -> keeps {0, 1}, renormalised
    # to 0.5/0.8 = 0.625 and 0.375. top_p = 0.5 keeps only token 0.
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    sampled = draws(logits, params(top_p=0.6))
    assert set(sampled.tolist()) == {0, 1}
    assert abs(sampled.eq(0).float().mean().item() - 0.625) < 0.03
    assert set(draws(logits, params(top_p=0.5)).tolist()) == {0}


def test_temperature_sharpens_the_distribution():
    # T = 0.5 squares the odds: probs 0.6, 0.4 -> 0.36 : 0.16 -> 0.36 / 0.52 = 0.6923 for token 0.
    logits = torch.log(torch.tensor([[0.6, 0.4]]))
    share = draws(logits, params(temperature=0.5)).eq(0).float().mean().item()
    assert abs(share - 0.36 / 0.52) < 0.03
    share_t1 = draws(logits, params(temperature=1.0)).eq(0).float().mean().item()
    assert abs(share_t1 - 0.6) < 0.03


def test_same_generator_seed_same_draws():
    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(draws(logits, params(), n=64, seed=5), draws(logits, params(), n=64, seed=5))
    assert not torch.equal(draws(logits, params(), n=64, seed=5), draws(logits, params(), n=64, seed=6))
    assert math.isfinite(float(logits.sum()))
