"""Rounds under FSDP on CPU (2 processes, gloo): rollouts and old log-probs before each training step.

Lightning's `FSDPStrategy` refuses a CPU accelerator, so the test drives torch FSDP itself, in the
order Lightning's fit loop uses (issue 20):

1. wrap the LightningModule as `FSDPStrategy._setup_model` does: `FullyShardedDataParallel(module,
   sharding_strategy, cpu_offload, **strategy.kwargs)` with the kwargs of the project's own
   `fsdp_strategy()` (its `LayerWrapPolicy`, `use_orig_params`), then Lightning's
   `_setup_activation_checkpointing` with the strategy's checkpointing kwargs; the only change is
   `device_id=cpu`;
2. build the optimiser over the LightningModule's trainable parameters (`use_orig_params`);
3. each epoch, the round first, inside `policy_for_round(trainer)` (which calls
   `prepare_policy_for_rollouts`): rollouts (`policy.generate`) and old log-probs
   (`policy.token_logprobs` under no_grad), as the datamodule runs them from `train_dataloader()`
   before any training step of the epoch;
4. then the training step through the wrapped root with Lightning's own `_ForwardRedirection` (what
   `Strategy.training_step` does), backward, `optimizer.step()` and the engine's step event.

That is the real path: the same FSDP units, the same lazy initialisation and the same calls into
inner units that fail on a GPU cluster. Without `prepare_policy_for_rollouts`, torch stops the first
training step ("Non-root FSDP instance's `_is_root` should not have been set yet"); the test checks
that too, so it cannot pass for another reason. Scenarios: NO_SHARD with the HF engine (sharded
weights cannot decode per rank), and FULL_SHARD with the vLLM engine (the CPU stand-in of
tests/fake_vllm.py): there the adapter is saved and probed from sharded weights, and one rank skips
its step event in the first epoch, so the push happens only because the step count is all-reduced.
"""

from __future__ import annotations

import json
import os
import tempfile
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "policies" / "tiny-minidesk"
LORA = {"r": 4, "alpha": 8}
EPOCHS = 2


def _module_class():
    import torch
    from lightning.pytorch import LightningModule

    class RoundModule(LightningModule):
        """A LightningModule with the project's shape: the policy as `.policy`, a PPO-style loss
        on new vs old log-probs of the round's samples."""

        def __init__(self, policy):
            super().__init__()
            self.policy = policy

        def training_step(self, batch, batch_idx):
            logp, _ = self.policy.token_logprobs(batch)
            mask = batch["target_mask"].float()
            ratio = torch.exp(logp - batch["old_logp"]) * mask
            return -(ratio * batch["advantages"][:, None]).sum() / mask.sum()

    return RoundModule


def _wrap(module, sharding: str):
    """`FSDPStrategy._setup_model` with the project's strategy settings, on CPU."""
    import torch
    from lightning.fabric.strategies.fsdp import _setup_activation_checkpointing
    from torch.distributed.fsdp import FullyShardedDataParallel

    from steprl.lightning.strategies import fsdp_strategy

    strategy = fsdp_strategy(sharding_strategy=sharding, activation_checkpointing=True)
    root = FullyShardedDataParallel(
        module, cpu_offload=strategy.cpu_offload, sharding_strategy=strategy.sharding_strategy, device_id=torch.device("cpu"), **strategy.kwargs
    )
    _setup_activation_checkpointing(root, strategy._activation_checkpointing_kwargs)
    strategy.model = root  # what Lightning's trainer.strategy.model is after setup
    return strategy


def _run_epochs(rank: int, engine: str, sharding: str, prepare: bool, skip_step_event: int | None) -> dict:
    """EPOCHS rounds + training steps; returns what each epoch saw on this rank."""
    import numpy as np
    import torch
    from lightning.pytorch.strategies.strategy import _ForwardRedirection

    import contextlib

    from steprl.lightning.strategies import policy_for_round
    from steprl.policy.vlm import VLMPolicy
    from steprl.types import Dialogue, DialogueTurn

    vllm = {"probe_tolerance": 0.1} if engine == "vllm" else None
    policy = VLMPolicy(str(TINY), lora=LORA, max_new_tokens=4, seed=rank, engine=engine, vllm=vllm)
    module = _module_class()(policy)
    strategy = _wrap(module, sharding)
    trainer = types.SimpleNamespace(strategy=strategy, lightning_module=module, model=strategy.model)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    redirect = _ForwardRedirection()
    rng = np.random.default_rng(rank)
    seen = []
    module.train()
    for epoch in range(EPOCHS):
        # the round (datamodule.train_dataloader): rollouts, then old log-probs, no grad, eval mode
        dialogues = [Dialogue("Click OK", [DialogueTurn(rng.integers(0, 256, (280, 448, 3), dtype=np.uint8))]) for _ in range(2)]
        module.eval()
        with policy_for_round(trainer) if prepare else contextlib.nullcontext(), torch.no_grad():
            generations = policy.generate(dialogues)
            samples = [
                Dialogue(d.instruction, [DialogueTurn(d.turns[0].screenshot, g.text, g.token_ids, trainable=True)])
                for d, g in zip(dialogues, generations)
            ]
            batch = policy.collate(samples)
            old_logp, _ = policy.token_logprobs(batch)
        module.train()
        batch.update(old_logp=old_logp, advantages=torch.tensor([1.0, -0.5]))
        # the training step through the root, as Strategy.training_step runs it
        loss = redirect(strategy.model, module, "training_step", batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if epoch != skip_step_event:
            policy.engine.on_optimizer_step()  # StepLightningModule.optimizer_step's event
        record = {"epoch": epoch, "loss": float(loss.detach()), "tokens": [len(g.token_ids) for g in generations]}
        if engine == "vllm":
            check = policy.engine.last_check
            record.update(pushes=policy.engine.pushes, check_ok=bool(check and check.ok), gap=check.gap if check else None)
        seen.append(record)
    return {"epochs": seen}


def _worker(rank: int, store: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["LOCAL_RANK"] = str(rank)  # as Lightning's launcher gives it; RANK stays unset (the engine sets it)
    os.environ.pop("RANK", None)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    from tests import fake_vllm

    fake_vllm.install_in_process()
    result: dict = {}
    try:
        # today's order without the fix: the first training step dies in torch's assert
        try:
            _run_epochs(rank, "hf", "NO_SHARD", prepare=False, skip_step_event=None)
            result["without_prepare"] = "ran"
        except AssertionError as error:
            result["without_prepare"] = str(error)
        dist.barrier()
        result["hf_no_shard"] = _run_epochs(rank, "hf", "NO_SHARD", prepare=True, skip_step_event=None)
        result["vllm_full_shard"] = _run_epochs(rank, "vllm", "FULL_SHARD", prepare=True, skip_step_event=0 if rank == 1 else None)
    finally:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
        dist.destroy_process_group()


def test_rounds_before_training_steps_under_fsdp(tmp_path):
    import torch.multiprocessing as mp

    store = tempfile.mktemp(dir=tmp_path)
    mp.spawn(_worker, args=(store, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for result in results:
        assert "`_is_root` should not have been set yet" in result["without_prepare"]
        for scenario in ("hf_no_shard", "vllm_full_shard"):
            epochs = result[scenario]["epochs"]
            assert [e["epoch"] for e in epochs] == list(range(EPOCHS))
            assert all(all(1 <= n <= 4 for n in e["tokens"]) for e in epochs)
        vllm = result["vllm_full_shard"]["epochs"]
        # one push per round: the initial adapter, then the trained one after epoch 0's step
        # (rank 1 skipped its step event there: it pushes because the count is all-reduced)
        assert [e["pushes"] for e in vllm] == [1, 2]
        assert all(e["check_ok"] for e in vllm)  # vLLM served the full (gathered) adapter
