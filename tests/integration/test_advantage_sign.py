"""The sign of the advantage survives the whole path: algorithm -> samples -> datamodule batches ->
StepLightningModule -> loss -> optimiser. One update on a round where only response X has A > 0 (and Y,
on the same context, A < 0) must make X more likely and Y less likely under the real Trainer.

Negating the advantages anywhere (in the round, in collate, in the module, in the loss) fails this.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from steprl.envs import make
from steprl.round import Round, RoundReport
from steprl.train import build
from steprl.types import Dialogue, DialogueTurn, TrainingSample
from tests.train_config import FAST, compose_train


def sequence_logprob(policy, dialogue: Dialogue) -> float:
    with torch.no_grad():
        batch = policy.collate([dialogue])
        logp, _ = policy.token_logprobs(batch)
    return float(logp[0][batch["target_mask"][0]].sum())


def test_one_update_raises_the_response_with_positive_advantage(tmp_path):
    parts = build(compose_train(["algo.ppo_epochs=1", "seed=0", *FAST], tmp_path))
    try:
        policy, runner = parts.module.policy, parts.datamodule.runner
        task = next(iter(runner.tasks.values()))
        env = make("minidesk", **runner.collector.pool.env_kwargs)
        screenshot = env.reset(task).screenshot
        env.close()
        context = Dialogue(task.instruction, [DialogueTurn(screenshot)])
        texts = {}
        policy.reseed(3)
        while len(texts) < 2:  # two different responses the policy itself can produce on this context
            for generation in policy.generate([context] * 8, temperature=1.5):
                texts.setdefault(generation.text, generation)
        x, y = list(texts.values())[:2]

        def sample(generation, advantage: float) -> TrainingSample:
            turn = DialogueTurn(screenshot, generation.text, generation.token_ids, trainable=True, response_logprobs=generation.logprobs)
            return TrainingSample(Dialogue(task.instruction, [turn]), advantage=advantage, task_id=task.id)

        samples = runner.with_old_logprobs(policy, [sample(x, +1.0), sample(y, -1.0)])
        before = [sequence_logprob(policy, s.dialogue) for s in samples]
        runner.run = lambda epoch, policy, progress=None: Round(samples, [None, None], RoundReport(epoch=epoch, started_at=0.0))  # type: ignore[method-assign]
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False,
            reload_dataloaders_every_n_epochs=1, use_distributed_sampler=False, default_root_dir=str(tmp_path),
        )  # fmt: skip
        trainer.fit(parts.module, datamodule=parts.datamodule)
        after = [sequence_logprob(policy, s.dialogue) for s in samples]
    finally:
        parts.close()
    assert after[0] > before[0], f"log π(X) went {before[0]:.4f} -> {after[0]:.4f} although A(X) = +1"
    assert after[1] < before[1], f"log π(Y) went {before[1]:.4f} -> {after[1]:.4f} although A(Y) = -1"
