"""The policy loss: token-level PPO-clip with asymmetric clipping, KL, entropy (docs/algorithm.md §5).

Inputs are [B, T] tensors over the target tokens of a mini-batch (B sequences, T positions) and a
mask that is true on trainable tokens; padding and prompt positions are masked out and contribute
exactly nothing, whatever values they hold (NaN included). Maths is done in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean")
KL_ESTIMATORS = ("k1", "k2", "k3")
LOG_RATIO_LIMIT = 20.0  # exp(±20) keeps ρ finite when a log-prob collapses (as verl does)
K3_LIMIT = 10.0  # the k3 KL estimate per token is clamped to [−10, 10] (as verl does)


def aggregate(values: torch.Tensor, mask: torch.Tensor, agg: str = "token-mean") -> torch.Tensor:
    """agg over masked positions of [B, T] `values`.

    "token-mean": Σ masked values / number of masked tokens (every token weighs the same);
    "seq-mean-token-mean": mean over sequences of each sequence's token mean, sequences with no
    masked token ignored (every sequence weighs the same). No masked token at all gives 0.
    """
    mask = mask.bool()
    values = torch.where(mask, values, torch.zeros_like(values))
    if agg == "token-mean":
        return values.sum() / mask.sum().clamp(min=1)
    if agg == "seq-mean-token-mean":
        tokens = mask.sum(dim=-1)
        has_tokens = tokens > 0
        per_sequence = values.sum(dim=-1) / tokens.clamp(min=1)
        return (per_sequence * has_tokens).sum() / has_tokens.sum().clamp(min=1)
    raise ValueError(f"algo.loss_agg={agg!r}: use one of {', '.join(AGG_MODES)}.")


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) from tokens sampled by π_θ (Schulman's estimators).

    k1 = log π_θ − log π_ref; k2 = ½·(log π_θ − log π_ref)²;
    k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1 (unbiased, never negative), clamped to
    at most K3_LIMIT = 10 per token.
    """
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if estimator == "k3":
        log_ratio = (ref_logp - logp).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
        # Clamped to ±K3_LIMIT as verl does: one token whose log-prob collapsed (e^20 ≈ 5e8) would
        # otherwise swamp the whole KL term the moment algo.kl_coef > 0.
        return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(-K3_LIMIT, K3_LIMIT)
    raise ValueError(f"kl_estimator={estimator!r}: use one of {', '.join(KL_ESTIMATORS)}.")


def truncated_is_weights(old_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor, cap: float = 2.0) -> torch.Tensor:
    """Truncated importance-sampling weights w_t = min(exp(log π_old − log π_rollout), cap) per token.

    The rollout engine (vLLM) samples from π_rollout, which differs slightly from the trainer's
    π_old (other kernels, bf16 rounding, a stale adapter); w_t re-weights each sampled token towards
    π_old, and the cap bounds the variance (truncated IS, as in the TIS correction of off-policy
    rollouts). Returned without gradient, 0 off the mask.
    """
    if cap <= 0.0:
        raise ValueError(f"algo.is_cap={cap} must be > 0 (the largest importance weight kept).")
    if old_logp.shape != rollout_logp.shape or mask.shape != old_logp.shape:
        raise ValueError(
            f"truncated_is_weights expects [B, T] old_logp, rollout_logp and mask of one shape; got {tuple(old_logp.shape)}, "
            f"{tuple(rollout_logp.shape)}, {tuple(mask.shape)}."
        )
    mask = mask.bool()
    zeros = torch.zeros_like(old_logp, dtype=torch.float32)
    log_ratio = torch.where(mask, old_logp.float() - rollout_logp.float(), zeros).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.where(mask, torch.exp(log_ratio).clamp(max=cap), zeros).detach()


IS_CORRECTIONS = ("none", "tis")


def check_is_settings(is_correction: str, is_cap: float) -> None:
    """One clear error per bad importance-sampling setting (algo.is_correction, algo.is_cap)."""
    if is_correction not in IS_CORRECTIONS:
        raise ValueError(f"algo.is_correction={is_correction!r}: use one of {', '.join(IS_CORRECTIONS)}.")
    if is_cap <= 0.0:
        raise ValueError(f"algo.is_cap={is_cap} must be > 0 (the largest importance weight kept).")


def check_loss_settings(
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
    kl_coef: float,
    kl_estimator: str,
    agg: str,
    entropy_coef: float,
) -> None:
    """One clear error per bad loss setting (the keys are the algo config's)."""
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"algo.clip_low={clip_low} must be in [0, 1): the ratio is clipped at 1 − clip_low.")
    if clip_high < 0.0:
        raise ValueError(f"algo.clip_high={clip_high} must be >= 0: the ratio is clipped at 1 + clip_high.")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"algo.dual_clip={dual_clip} must be > 1 (3 is usual) or null to turn it off.")
    if kl_coef < 0.0:
        raise ValueError(f"algo.kl_coef={kl_coef} must be >= 0.")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"algo.kl_estimator={kl_estimator!r}: use one of {', '.join(KL_ESTIMATORS)}.")
    if agg not in AGG_MODES:
        raise ValueError(f"algo.loss_agg={agg!r}: use one of {', '.join(AGG_MODES)}.")
    if entropy_coef < 0.0:
        raise ValueError(f"algo.entropy_coef={entropy_coef} must be >= 0.")


def _check_shapes(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor) -> None:
    if logp.dim() != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(
            f"policy_loss expects [B, T] logp, old_logp and mask of one shape; got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}."
        )
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages must be [B] or [B, T]; got {tuple(advantages.shape)} for logp {tuple(logp.shape)}.")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.3,
    dual_clip: float | None = None,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    kl_estimator: str = "k3",
    agg: str = "token-mean",
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    weights: torch.Tensor | None = None,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = −agg(min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A)) + kl_coef·agg(kl) − entropy_coef·agg(H).

    ρ = exp(log π_θ − log π_old). Dual clip c (for A < 0): the objective is max(that, c·A), as in
    verl. `weights` [B] scale each sequence's policy-gradient term (aug.weight); they do not change
    the token count in the denominator, and do not touch the KL or entropy terms. `is_weights`
    [B, T] (optional, no gradient) scale each token's policy-gradient term: the importance weights of
    an engine/trainer mismatch correction (`truncated_is_weights`); None = no correction.

    Stats (detached 0-dim tensors): `pg_loss` (the policy-gradient term), `clipfrac` (share of
    masked tokens where the clipped branch was taken), `approx_kl` (mean over masked tokens of the
    k3 estimate of KL(π_old ‖ π_θ): ρ − 1 − log ρ), `kl` (agg of the reference KL, 0 without a
    reference), `entropy` (agg of the entropy, 0 when not given).
    """
    check_loss_settings(clip_low, clip_high, dual_clip, kl_coef, kl_estimator, agg, entropy_coef)
    _check_shapes(logp, old_logp, mask, advantages)
    mask = mask.bool()
    zeros = torch.zeros_like(logp, dtype=torch.float32)

    def masked(x: torch.Tensor) -> torch.Tensor:
        # Padding may hold anything (NaN, -inf): replace it before any arithmetic so that neither
        # the loss nor its gradient can see it.
        return torch.where(mask, x.float(), zeros)

    logp, old_logp = masked(logp), masked(old_logp)
    advantages = masked(advantages.unsqueeze(-1).expand_as(logp) if advantages.dim() == 1 else advantages)

    log_ratio = (logp - old_logp).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)  # = −min(ρA, clip(ρ)A)
    if dual_clip is not None:
        per_token = torch.where(advantages < 0, torch.minimum(per_token, -advantages * dual_clip), per_token)
    if weights is not None:
        if weights.shape != logp.shape[:1]:
            raise ValueError(f"weights must be [B] = {tuple(logp.shape[:1])}; got {tuple(weights.shape)}.")
        per_token = per_token * weights.float().unsqueeze(-1)
    if is_weights is not None:
        if is_weights.shape != logp.shape:
            raise ValueError(f"is_weights must be [B, T] = {tuple(logp.shape)}; got {tuple(is_weights.shape)}.")
        per_token = per_token * masked(is_weights.detach())

    pg_loss = aggregate(per_token, mask, agg)
    loss = pg_loss
    stats: dict[str, torch.Tensor] = {"pg_loss": pg_loss.detach()}

    kl_value = torch.zeros((), device=logp.device)
    if ref_logp is not None:
        kl_value = aggregate(kl_penalty(logp, masked(ref_logp), kl_estimator), mask, agg)
        loss = loss + kl_coef * kl_value
    elif kl_coef > 0:
        raise ValueError("kl_coef > 0 needs the reference log-probs (ref_logp); pass them or set algo.kl_coef=0.")

    entropy_value = torch.zeros((), device=logp.device)
    if entropy is not None:
        entropy_value = aggregate(masked(entropy), mask, agg)
        loss = loss - entropy_coef * entropy_value
    elif entropy_coef > 0:
        raise ValueError("entropy_coef > 0 needs the per-token entropy; pass `entropy` or set algo.entropy_coef=0.")

    with torch.no_grad():
        stats["clipfrac"] = aggregate((clipped > unclipped).float(), mask, "token-mean")
        stats["approx_kl"] = aggregate(torch.expm1(log_ratio) - log_ratio, mask, "token-mean")
        stats["kl"] = kl_value.detach()
        stats["entropy"] = entropy_value.detach()
    return loss, stats


@dataclass
class PolicyLoss:
    """`policy_loss` with its settings bound (built from the algorithm spec; called by the
    LightningModule on each mini-batch)."""

    clip_low: float = 0.2
    clip_high: float = 0.3
    dual_clip: float | None = None
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    agg: str = "token-mean"
    entropy_coef: float = 0.0
    is_correction: str = "none"  # "none" | "tis": truncated importance sampling of the sampler's tokens
    is_cap: float = 2.0  # the largest importance weight "tis" keeps

    def __post_init__(self) -> None:
        check_loss_settings(
            self.clip_low, self.clip_high, self.dual_clip, self.kl_coef, self.kl_estimator, self.agg, self.entropy_coef
        )
        check_is_settings(self.is_correction, self.is_cap)

    @classmethod
    def from_spec(cls, spec: Any) -> PolicyLoss:
        """The loss settings of an `AlgorithmSpec`."""
        return cls(
            clip_low=spec.clip_low,
            clip_high=spec.clip_high,
            dual_clip=spec.dual_clip,
            kl_coef=spec.kl_coef,
            kl_estimator=spec.kl_estimator,
            agg=spec.loss_agg,
            entropy_coef=spec.entropy_coef,
            is_correction=spec.is_correction,
            is_cap=spec.is_cap,
        )

    def importance_weights(self, old_logp: torch.Tensor, rollout_logp: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
        """`is_correction="tis"`: w_t = min(exp(log π_old − log π_rollout), is_cap) per target token
        (`truncated_is_weights`); "none": None. A batch without the sampler's log-probs cannot be
        corrected: that is an error, never a silent update without the configured correction."""
        if self.is_correction == "none":
            return None
        if rollout_logp is None:
            raise KeyError(
                "algo.is_correction=tis needs the sampler's log-probs in the training batch (batch['rollout_logp']); "
                "the batch has none. Set algo.is_correction=none."
            )
        return truncated_is_weights(old_logp, rollout_logp, mask, self.is_cap)

    def __call__(
        self,
        logp: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        ref_logp: torch.Tensor | None = None,
        entropy: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        rollout_logp: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`policy_loss` on one mini-batch; `rollout_logp` (the sampler's log-probs) feeds the
        importance-sampling correction when it is on."""
        return policy_loss(
            logp,
            old_logp,
            advantages,
            mask,
            clip_low=self.clip_low,
            clip_high=self.clip_high,
            dual_clip=self.dual_clip,
            kl_coef=self.kl_coef,
            ref_logp=ref_logp,
            kl_estimator=self.kl_estimator,
            agg=self.agg,
            entropy=entropy,
            entropy_coef=self.entropy_coef,
            weights=weights,
            is_weights=self.importance_weights(old_logp, rollout_logp, mask),
        )
