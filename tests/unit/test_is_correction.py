"""Truncated importance sampling for the engine/trainer mismatch: weights and their use in the loss."""

from __future__ import annotations

import math

import pytest
import torch

from steprl.algo.loss import PolicyLoss, policy_loss, truncated_is_weights
from steprl.types import Dialogue, DialogueTurn


def test_truncated_is_weights_worked_by_hand():
    # old_logp  [[-1.0, -2.0, -0.5], [-1.0, 9.9, 9.9]]
    # rollout   [[-1.0, -2.5, -0.1], [-2.0, 0.0, 0.0]], mask [[1, 1, 1], [1, 0, 0]], cap 1.5
    # w = min(exp(old - rollout), 1.5): exp(0) = 1; exp(0.5) = 1.6487 -> 1.5; exp(-0.4) = 0.6703;
    # exp(1.0) = 2.718 -> 1.5; masked positions 0
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, 9.9, 9.9]])
    rollout = torch.tensor([[-1.0, -2.5, -0.1], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    weights = truncated_is_weights(old, rollout, mask, cap=1.5)
    expected = torch.tensor([[1.0, 1.5, math.exp(-0.4)], [1.5, 0.0, 0.0]])
    torch.testing.assert_close(weights, expected)
    assert not weights.requires_grad


def test_truncated_is_weights_checks_cap_and_shapes():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="is_cap"):
        truncated_is_weights(x, x, x.bool(), cap=0.0)
    with pytest.raises(ValueError, match="one shape"):
        truncated_is_weights(x, torch.zeros(1, 3), x.bool())


def test_is_weights_scale_each_tokens_policy_gradient_term():
    # logp = old_logp -> ratio 1, no clipping; A = 2; tokens per_token = -A * 1 = -2.
    # is_weights [0.5, 1.5] on two masked tokens: token-mean = (-2*0.5 + -2*1.5) / 2 = -2.0;
    # weights [1, 0.25] instead: (-2*1 + -2*0.25)/2 = -1.25
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -1.0]])
    mask = torch.tensor([[True, True]])
    advantages = torch.tensor([2.0])
    loss, _ = policy_loss(logp, old, advantages, mask, is_weights=torch.tensor([[0.5, 1.5]]))
    assert loss.item() == pytest.approx(-2.0)
    loss, _ = policy_loss(logp, old, advantages, mask, is_weights=torch.tensor([[1.0, 0.25]]))
    assert loss.item() == pytest.approx(-1.25)
    loss.backward()
    # d loss / d logp_t = -A * w_t * ratio / 2 tokens = [-1.0, -0.25]
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -0.25]]))
    with pytest.raises(ValueError, match="is_weights must be"):
        policy_loss(logp, old, advantages, mask, is_weights=torch.ones(2))


def test_importance_correction_is_a_loss_setting():
    """algo.is_correction lives on the loss: the policy knows nothing of it."""
    batch = {
        "old_logp": torch.tensor([[-1.0, -2.0]]),
        "rollout_logp": torch.tensor([[-1.0, -3.0]]),
        "target_mask": torch.tensor([[True, True]]),
    }
    assert PolicyLoss().importance_weights(batch["old_logp"], batch["rollout_logp"], batch["target_mask"]) is None
    tis = PolicyLoss(is_correction="tis", is_cap=2.0)
    # exp(0) = 1; exp(1) = 2.718 -> capped at 2
    torch.testing.assert_close(tis.importance_weights(batch["old_logp"], batch["rollout_logp"], batch["target_mask"]), torch.tensor([[1.0, 2.0]]))
    with pytest.raises(KeyError, match="rollout_logp"):
        tis.importance_weights(batch["old_logp"], None, batch["target_mask"])
    with pytest.raises(ValueError, match="is_correction"):
        PolicyLoss(is_correction="vtrace")
    with pytest.raises(ValueError, match="is_cap"):
        PolicyLoss(is_correction="tis", is_cap=0.0)
    # The loss applies the weights: token 2's term is scaled by 2 (A = 1, ρ = 1 -> per-token −1 and −2).
    logp = batch["old_logp"].clone().requires_grad_(True)
    loss, _ = tis(logp, batch["old_logp"], torch.tensor([1.0]), batch["target_mask"], rollout_logp=batch["rollout_logp"])
    assert loss.item() == pytest.approx(-(1.0 + 2.0) / 2)
    # An update without the sampler's log-probs would silently skip the correction: refused.
    with pytest.raises(KeyError, match="is_correction=none"):
        tis(logp, batch["old_logp"], torch.tensor([1.0]), batch["target_mask"])
