"""StepLightningModule: holds the policy and the loss, and runs one PPO-clip update per mini-batch.

All maths lives in `steprl.algo.loss`; this class only wires the policy's log-probs into the loss,
logs the statistics and lets Lightning do optimisation, precision, accumulation and strategies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import grad_norm

from steprl.algo.loss import PolicyLoss


class StepLightningModule(LightningModule):
    """The policy (a `VLMPolicy`, an nn.Module) and the policy loss, both injected.

    `optimizer` and `scheduler` are factories (Hydra `_partial_: true`): `optimizer(params)` and
    `scheduler(optimizer)`. Only trainable parameters (LoRA adapters, or everything under full
    fine-tuning) are given to the optimiser. The policy is kept out of the saved hyper-parameters
    (it is the big model; its weights are in the checkpoint's state_dict).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        loss: PolicyLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["policy", "loss", "optimizer", "scheduler"])
        self.policy = policy
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._update_this_batch = True  # the batch's `has_tokens`, read by optimizer_step

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._update_this_batch = bool(batch.get("has_tokens", True))
        mask = batch["target_mask"]
        logp, entropy = self.policy.token_logprobs(batch, with_entropy=True)
        ref_logp = self.policy.reference_logprobs(batch) if self.loss.kl_coef > 0 else None
        loss, stats = self.loss(
            logp=logp,
            old_logp=batch["old_logp"],
            advantages=batch["advantages"],
            mask=mask,
            ref_logp=ref_logp,
            entropy=entropy,
            weights=batch["weights"],
            rollout_logp=batch.get("rollout_logp"),
        )
        tokens = int(mask.sum())
        self.log_dict(
            {f"train/{name}": value for name, value in stats.items()},
            on_step=False,
            on_epoch=True,
            batch_size=max(tokens, 1),
            sync_dist=True,
        )
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=max(tokens, 1), sync_dist=True)
        return loss

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:  # type: ignore[override]
        """Skip the parameter update for batches that carry no trainable token on any rank (the
        batch's `has_tokens`, remembered by training_step).

        Such batches exist only to keep DDP ranks in step (padding) or when a round produced no
        sample at all (e.g. STEP with no successful trajectory); running the closure keeps every
        rank's collective calls aligned, and skipping the step keeps Adam's momentum from moving
        the weights on a zero gradient.
        """
        if not self._update_this_batch:
            if optimizer_closure is not None:
                optimizer_closure()
            return
        optimizer.step(closure=optimizer_closure)
        self.policy.engine.on_optimizer_step()  # the explicit event on which a rollout engine (vLLM) takes the new weights

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        norms = grad_norm(self.policy, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=False, on_epoch=True, batch_size=1, sync_dist=True)

    # ------------------------------------------------------------------ optimisers
    def configure_optimizers(self) -> Any:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if not params:
            raise ValueError("The policy has no trainable parameters: enable LoRA or full fine-tuning.")
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}
