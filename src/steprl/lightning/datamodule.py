"""SuccessRateDataModule: one RL round per epoch, cut into mini-batches.

Lightning calls `train_dataloader()` every epoch (reload_dataloaders_every_n_epochs=1); it runs the
round (`steprl.round.RoundRunner`: schedule, SR-Traj, collect, record, samples, SL-GRPO, old
log-probs), then serves the samples as mini-batches. The batch is the only channel to
`StepLightningModule`: advantages, weights, old and rollout log-probs, and the flag that says
whether any rank's batch at this index has a trainable token all travel in it.

With `overlap=True` the rounds run through `steprl.overlap.RoundPipeline`: round t+1 is collected in
a background thread with a policy snapshot while epoch t trains (docs/overlap.md); every batch
carries its samples' policy lag (`policy_lag`, rounds of updates behind).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from steprl.errors import ConfigError
from steprl.lightning.strategies import policy_for_round
from steprl.overlap import RoundPipeline
from steprl.rollout.evaluation import EvalResult, evaluate
from steprl.round import RoundReport, RoundRunner
from steprl.types import Task, TrainingSample


@dataclass
class MiniBatch:
    """The samples of one optimiser step, and whether any rank's mini-batch at this index has a
    trainable token (if none has, every rank runs the step's collectives and skips the update)."""

    samples: list[TrainingSample]
    has_tokens: bool = True
    policy_lag: int = 0  # rounds of updates between the rollouts' weights and the weights they train


class SuccessRateDataModule(LightningDataModule):
    """Runs `runner` each epoch and serves its samples; holds its state for checkpoints.

    `batch_size` samples per mini-batch (one optimiser step each), `algo.ppo_epochs` shuffled passes
    per round; `eval_tasks` are the held-out split of `evaluate`. `overlap`, `max_lag`,
    `overlap_timeout_s`: collect round t+1 while round t trains, with weights at most `max_lag` rounds
    old, waiting at most `overlap_timeout_s` for a collection (`steprl.overlap.RoundPipeline`).
    """

    def __init__(
        self,
        runner: RoundRunner,
        eval_tasks: Sequence[Task],
        batch_size: int,
        steps_per_round: int | None = None,
        overlap: bool = False,
        max_lag: int = 1,
        overlap_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size = {batch_size}; it must be >= 1.")
        if steps_per_round is not None and steps_per_round < 1:
            raise ConfigError(f"data.steps_per_round = {steps_per_round}; it must be >= 1 (or null: one step per batch_size samples).")
        self.runner = runner
        self.pipeline = RoundPipeline(runner, overlap=overlap, max_lag=max_lag, timeout_s=overlap_timeout_s)
        self.eval_tasks = list(eval_tasks)
        self.batch_size = int(batch_size)
        self.steps_per_round = steps_per_round
        self.next_round = 0  # the epoch whose round comes next (checkpointed)
        self.last_round: RoundReport | None = None
        self.progress: Callable[[int, int], None] | None = None  # set by the RolloutProgress callback

    def setup(self, stage: str) -> None:
        """Refuse the Trainer flags and strategy combinations this design cannot work with."""
        if self.pipeline.overlap and "FSDP" in type(self.trainer.strategy).__name__:
            raise ConfigError(
                "data.overlap=true cannot run under trainer=fsdp: the background collection would run outside the ranks' "
                "lock-step collectives and precision context. Use data.overlap=false, or trainer=ddp / deepspeed (stage 2)."
            )
        if self.trainer.reload_dataloaders_every_n_epochs != 1:
            raise ConfigError("trainer.reload_dataloaders_every_n_epochs must be 1: each epoch collects fresh rollouts.")
        if self.trainer._accelerator_connector.use_distributed_sampler:
            raise ConfigError("trainer.use_distributed_sampler must be false: the round shards its rollouts over ranks itself.")

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch
        if epoch < self.next_round:
            # Resuming from an end-of-epoch checkpoint, Lightning asks for the dataloader of the epoch that
            # checkpoint closed and never iterates it: that round ran already (running it again would
            # update the record twice).
            return DataLoader([MiniBatch([self.runner.padding_sample()], False)], batch_size=None, collate_fn=self.collate)
        self.next_round = epoch + 1
        last_epoch = self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0 and epoch + 1 >= self.trainer.max_epochs
        with policy_for_round(self.trainer) as policy:  # every rank together: FSDP's root is set up, precision applied
            round_ = self.pipeline.round(epoch, policy, progress=self.progress, collect_next=not last_epoch)
        self.last_round = round_.report
        minibatches = self.minibatches(round_.samples, epoch, policy_lag=round_.report.policy_lag)
        self.last_round.optimizer_steps = sum(batch.has_tokens for batch in minibatches)
        return DataLoader(minibatches, batch_size=None, collate_fn=self.collate)

    def minibatches(self, samples: list[TrainingSample], epoch: int, policy_lag: int = 0) -> list[MiniBatch]:
        """`algo.ppo_epochs` shuffled passes cut into mini-batches of `batch_size`, or, with
        `data.steps_per_round`, into exactly that many mini-batches (so methods that make different
        numbers of samples from the same rollouts take the same number of optimiser steps). Every rank
        gets the same number of mini-batches (padded with samples that carry no trainable token) so DDP
        never waits on a rank."""
        comm = self.runner.comm
        rng = np.random.default_rng([self.runner.seed, epoch, comm.rank, 7])
        order = np.concatenate([rng.permutation(len(samples)) for _ in range(self.runner.algo.ppo_epochs)]).astype(int)
        if self.steps_per_round is None:
            passes = np.split(order, self.runner.algo.ppo_epochs) if len(samples) else []
            batches = [[samples[i] for i in p[s : s + self.batch_size]] for p in passes for s in range(0, len(p), self.batch_size)]
        else:
            batches = [[samples[i] for i in part] for part in np.array_split(order, self.steps_per_round)]
        count = max(comm.all_reduce_max([len(batches)])[0], 1)
        batches += [[] for _ in range(count - len(batches))]
        batches = [batch or [self.runner.padding_sample()] for batch in batches]
        any_tokens = comm.all_reduce_max([int(any(s.old_logprobs for s in batch)) for batch in batches])
        return [MiniBatch(batch, bool(flag), policy_lag) for batch, flag in zip(batches, any_tokens)]

    def collate(self, minibatch: MiniBatch) -> dict[str, torch.Tensor]:
        """The policy's padded batch + old and rollout log-probs, advantages and weights aligned with
        it, `has_tokens` (whether some rank's batch at this index trains on anything) and each row's
        `policy_lag`."""
        samples = minibatch.samples
        batch = self.trainer.lightning_module.policy.collate([s.dialogue for s in samples])
        mask = batch["target_mask"]
        batch["old_logp"] = torch.zeros(mask.shape, dtype=torch.float32)
        batch["rollout_logp"] = torch.zeros(mask.shape, dtype=torch.float32)
        for row, sample in enumerate(samples):
            old = torch.tensor(sample.old_logprobs or (), dtype=torch.float32)
            if old.numel() != int(mask[row].sum()):
                raise RuntimeError(
                    f"Sample {row} has {old.numel()} old log-probs for {int(mask[row].sum())} target tokens: "
                    "the training context was tokenised differently from the old log-prob pass."
                )
            batch["old_logp"][row, mask[row]] = old
            # The sampler's log-probs where every trainable token was sampled; else old (IS weight 1).
            sampled = sample.rollout_logprobs()
            batch["rollout_logp"][row, mask[row]] = torch.tensor(sampled, dtype=torch.float32) if len(sampled) == old.numel() else old
        batch["advantages"] = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
        batch["weights"] = torch.tensor([s.weight for s in samples], dtype=torch.float32)
        batch["has_tokens"] = torch.tensor(minibatch.has_tokens)
        batch["policy_lag"] = torch.full((len(samples),), minibatch.policy_lag, dtype=torch.long)
        return batch

    def evaluate(self, policy: Any, *, split: str = "test", greedy: bool = True, max_tasks: int | None = None, repeats: int = 1) -> EvalResult:
        """`repeats` rollouts per task of `split` ("test": held-out, "train": the training tasks)."""
        tasks = self.eval_tasks if split == "test" else list(self.runner.tasks.values())
        self.pipeline.wait_idle()  # one caller of the env pool at a time
        return evaluate(
            self.runner.collector, policy, tasks, success_threshold=self.runner.algo.success_threshold, greedy=greedy,
            repeats=repeats, max_tasks=max_tasks, comm=self.runner.comm, progress=self.progress,
        )  # fmt: skip

    @property
    def recorder(self):
        return self.runner.recorder

    @property
    def scheduler(self):
        return self.runner.scheduler

    @property
    def env_steps_total(self) -> int:
        return self.runner.env_steps_total

    def teardown(self, stage: str) -> None:
        """Wait out a background collection (started for an epoch that will not run) before the pool closes."""
        self.pipeline.close()

    def state_dict(self) -> dict[str, Any]:
        return {**self.pipeline.state_dict(), "next_round": self.next_round}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pipeline.load_state_dict(state_dict)
        self.next_round = int(state_dict.get("next_round", 0))
