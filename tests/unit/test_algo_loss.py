"""The PPO-clip policy loss, its aggregation, KL and entropy terms (docs/algorithm.md §5)."""

from __future__ import annotations

import math

import pytest
import torch

from steprl.algo.loss import PolicyLoss, aggregate, kl_penalty, policy_loss

LN = math.log


def hand_batch() -> dict[str, torch.Tensor]:
    """Two sequences, old log-probs 0, so ρ = exp(logp). Sequence 1 has one padding position
    holding NaN, which must not leak into anything."""
    logp = torch.tensor([[LN(1.0), LN(1.5), LN(0.5)], [LN(1.5), LN(0.5), float("nan")]], requires_grad=True)
    return {
        "logp": logp,
        "old_logp": torch.zeros(2, 3),
        "advantages": torch.tensor([1.0, -1.0]),
        "mask": torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool),
    }


# Per-token losses −min(ρA, clip(ρ, 0.8, 1.3)A), by hand:
#   A = +1, ρ = 1.0 → −1.0;  ρ = 1.5 → −min(1.5, 1.3) = −1.3 (clipped);  ρ = 0.5 → −min(0.5, 0.8) = −0.5
#   A = −1, ρ = 1.5 → −min(−1.5, −1.3) = 1.5;  ρ = 0.5 → −min(−0.5, −0.8) = 0.8 (clipped)
TOKEN_LOSSES = [[-1.0, -1.3, -0.5], [1.5, 0.8]]


def test_token_mean_by_hand():
    loss, stats = policy_loss(**hand_batch(), clip_low=0.2, clip_high=0.3)
    assert loss.item() == pytest.approx(-0.1)  # (−1 − 1.3 − 0.5 + 1.5 + 0.8) / 5 tokens
    assert stats["pg_loss"].item() == pytest.approx(-0.1)
    assert stats["clipfrac"].item() == pytest.approx(0.4)  # 2 of 5 tokens took the clipped branch
    # approx_kl: ρ − 1 − ln ρ; ρ = 1 → 0, ρ = 1.5 → 0.0945349, ρ = 0.5 → 0.1931472; (0 + 2·0.0945349 + 2·0.1931472) / 5
    assert stats["approx_kl"].item() == pytest.approx(0.1150728, rel=1e-5)
    assert stats["kl"].item() == 0.0 and stats["entropy"].item() == 0.0


def test_seq_mean_token_mean_by_hand():
    loss, _ = policy_loss(**hand_batch(), agg="seq-mean-token-mean")
    assert loss.item() == pytest.approx(((-2.8 / 3) + (2.3 / 2)) / 2)  # (−0.9333 + 1.15) / 2 = 0.1083333


def test_padding_contributes_nothing_to_loss_or_gradient():
    batch = hand_batch()
    loss, stats = policy_loss(**batch)
    loss.backward()
    grad = batch["logp"].grad
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in stats.values())
    assert torch.isfinite(grad).all() and grad[1, 2] == 0.0
    # d loss / d logp = d(−ρA)/d logp / 5 = −ρA / 5 where unclipped, 0 where clipped
    assert grad[0].tolist() == pytest.approx([-0.2, 0.0, -0.1])
    assert grad[1, :2].tolist() == pytest.approx([0.3, 0.0])


def test_padding_values_do_not_change_the_result():
    batch = hand_batch()
    other = {k: v.detach().clone() for k, v in batch.items()}
    other["logp"][1, 2], other["old_logp"][1, 2] = 123.0, -7.0
    assert policy_loss(**other)[0].item() == pytest.approx(policy_loss(**batch)[0].item())


def test_no_trainable_token_gives_zero_and_a_usable_graph():
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, stats = policy_loss(logp, torch.zeros(2, 3), torch.ones(2), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and stats["clipfrac"].item() == 0.0 and logp.grad.abs().sum() == 0.0
    assert aggregate(torch.ones(2, 3), torch.zeros(2, 3), "seq-mean-token-mean").item() == 0.0


def test_dual_clip():
    # A = −1, ρ = 5: PPO-clip loss = max(5, 1.3) = 5; the dual clip c = 3 caps it at −c·A = 3.
    args = (torch.tensor([[LN(5.0)]]), torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1, dtype=torch.bool))
    assert policy_loss(*args)[0].item() == pytest.approx(5.0)
    assert policy_loss(*args, dual_clip=3.0)[0].item() == pytest.approx(3.0)
    # positive advantages are not dual-clipped: A = +1, ρ = 5 → −min(5, 1.3) = −1.3 either way
    positive = (args[0], args[1], torch.tensor([1.0]), args[3])
    assert policy_loss(*positive, dual_clip=3.0)[0].item() == pytest.approx(-1.3)


def test_per_token_advantages_equal_the_broadcast():
    batch = hand_batch()
    per_token = dict(batch, advantages=batch["advantages"].unsqueeze(-1).expand(2, 3))
    assert policy_loss(**per_token)[0].item() == pytest.approx(policy_loss(**batch)[0].item())


def test_weights_scale_each_sequence():
    # weights [2, 0]: (2·(−2.8) + 0·2.3) / 5 tokens = −1.12
    loss, _ = policy_loss(**hand_batch(), weights=torch.tensor([2.0, 0.0]))
    assert loss.item() == pytest.approx(-1.12)


@pytest.mark.parametrize(("estimator", "expected"), [("k1", 0.6931472), ("k2", 0.2402265), ("k3", 0.1931472)])
def test_kl_estimators_by_hand(estimator, expected):
    # log π_θ = ln 2, log π_ref = 0: k1 = ln 2; k2 = ½(ln 2)²; k3 = e^(−ln 2) + ln 2 − 1 = 0.5 + 0.6931472 − 1
    logp, ref = torch.tensor([[LN(2.0)]]), torch.zeros(1, 1)
    assert kl_penalty(logp, ref, estimator).item() == pytest.approx(expected, rel=1e-6)
    loss, stats = policy_loss(logp, logp.clone(), torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool),
                              kl_coef=0.1, ref_logp=ref, kl_estimator=estimator)
    # ρ = 1, A = 1: pg term −1; plus 0.1·kl
    assert stats["kl"].item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() == pytest.approx(-1.0 + 0.1 * expected, rel=1e-6)


def test_entropy_bonus():
    # token-mean entropy over the 5 masked tokens: (1 + 2 + 3 + 4 + 5) / 5 = 3 (the 99 is padding)
    entropy = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0]])
    loss, stats = policy_loss(**hand_batch(), entropy=entropy, entropy_coef=0.01)
    assert stats["entropy"].item() == pytest.approx(3.0)
    assert loss.item() == pytest.approx(-0.1 - 0.03)


def test_matches_a_reference_written_with_loops():
    generator = torch.Generator().manual_seed(0)
    batch, length = 4, 7
    logp = torch.randn(batch, length, generator=generator) * 0.3 - 1.0
    old_logp = logp + torch.randn(batch, length, generator=generator) * 0.3
    advantages = torch.randn(batch, generator=generator)
    lengths = [7, 3, 0, 5]  # right padding; one sequence with no target token
    mask = torch.tensor([[t < n for t in range(length)] for n in lengths])
    loss, stats = policy_loss(logp, old_logp, advantages, mask, clip_low=0.2, clip_high=0.3)

    total, count, clipped_count = 0.0, 0, 0
    for b in range(batch):
        for t in range(lengths[b]):
            ratio = math.exp(logp[b, t].item() - old_logp[b, t].item())
            a = advantages[b].item()
            unclipped, clipped = ratio * a, min(max(ratio, 0.8), 1.3) * a
            total += -min(unclipped, clipped)
            clipped_count += clipped < unclipped  # the clipped objective is the smaller one
            count += 1
    assert loss.item() == pytest.approx(total / count, rel=1e-5, abs=1e-6)
    assert stats["clipfrac"].item() == pytest.approx(clipped_count / count)


def test_bfloat16_inputs_are_computed_in_float32():
    batch = hand_batch()
    low = {k: (v.detach().to(torch.bfloat16) if v.dtype.is_floating_point else v) for k, v in batch.items()}
    loss, _ = policy_loss(**low)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(-0.1, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kl_coef": 0.1}, "ref_logp"),
        ({"entropy_coef": 0.1}, "entropy"),
        ({"agg": "sum"}, "loss_agg"),
        ({"dual_clip": 1.0}, "dual_clip"),
        ({"clip_low": 1.0}, "clip_low"),
        ({"kl_estimator": "k4"}, "kl_estimator"),
        ({"weights": torch.ones(3)}, "weights"),
        ({"advantages": torch.ones(3)}, "advantages"),
        ({"mask": torch.ones(2, 2, dtype=torch.bool)}, r"\[B, T\]"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        policy_loss(**{**hand_batch(), **kwargs})


def test_policy_loss_object_binds_the_settings():
    loss_fn = PolicyLoss(clip_low=0.2, clip_high=0.3, agg="seq-mean-token-mean")
    batch = hand_batch()
    assert loss_fn(**batch)[0].item() == pytest.approx(policy_loss(**batch, agg="seq-mean-token-mean")[0].item())
    with pytest.raises(ValueError, match="kl_estimator"):
        PolicyLoss(kl_estimator="k9")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    """Same loss, stats and gradient on the GPU (all inputs there), in float32 and bfloat16."""
    generator = torch.Generator().manual_seed(1)
    batch, length = 8, 64
    logp = torch.randn(batch, length, generator=generator) * 0.5 - 2.0
    old_logp = logp + torch.randn(batch, length, generator=generator) * 0.2
    ref_logp = logp + torch.randn(batch, length, generator=generator) * 0.2
    advantages = torch.randn(batch, generator=generator)
    mask = torch.rand(batch, length, generator=generator) < 0.7
    entropy, weights = torch.rand(batch, length, generator=generator), torch.rand(batch, generator=generator)
    settings = {"dual_clip": 3.0, "kl_coef": 0.05, "entropy_coef": 0.01}

    def run(device: str):
        x = logp.to(device=device, dtype=dtype).clone().requires_grad_(True)  # a fresh leaf per run
        tensors = [t.to(device=device, dtype=dtype) for t in (old_logp, advantages)]
        loss, stats = policy_loss(x, *tensors, mask.to(device), ref_logp=ref_logp.to(device, dtype),
                                  entropy=entropy.to(device, dtype), weights=weights.to(device), **settings)
        loss.backward()
        return loss.item(), {k: v.item() for k, v in stats.items()}, x.grad.float().cpu()

    cpu_loss, cpu_stats, cpu_grad = run("cpu")
    gpu_loss, gpu_stats, gpu_grad = run("cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4, abs=1e-5)
    assert gpu_stats == pytest.approx(cpu_stats, rel=1e-4, abs=1e-5)
    assert torch.allclose(gpu_grad, cpu_grad, rtol=1e-3, atol=1e-6)


def test_k3_is_clamped_as_verl_does():
    # log π_ref − log π_θ = 20 (a collapsed token): e^20 − 20 − 1 ≈ 4.85e8, clamped to 10;
    # = 2: e^2 − 2 − 1 = 4.389 (inside the clamp, unchanged).
    logp = torch.tensor([[-20.0, -2.0]])
    k3 = kl_penalty(logp, torch.zeros(1, 2), "k3")
    assert k3[0].tolist() == pytest.approx([10.0, math.exp(2.0) - 3.0], rel=1e-6)
