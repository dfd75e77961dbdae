"""The datamodule's batch bookkeeping: rollout log-probs aligned with the target tokens."""

from __future__ import annotations

import numpy as np
import torch

from steprl.lightning.datamodule import SuccessRateDataModule
from steprl.lightning.distributed import shard_groups
from steprl.types import Dialogue, DialogueTurn, TrainingSample


def sample(turns):
    return TrainingSample(Dialogue("do it", turns), advantage=1.0, task_id="t")


def test_rollout_logprobs_fill_the_target_positions_in_order():
    image = np.zeros((4, 4, 3), np.uint8)
    sampled = sample([
        DialogueTurn(None, "a", (1, 2), trainable=True, response_logprobs=(-0.1, -0.2)),
        DialogueTurn(image, "b", (3,), trainable=True, response_logprobs=(-0.3,)),
    ])
    expert = sample([DialogueTurn(image, "c", (), trainable=True)])  # no sampler log-probs
    mask = torch.tensor([[False, True, True, False, True], [False, False, True, True, False]])
    old = torch.tensor([[0.0, -1.0, -1.0, 0.0, -1.0], [0.0, 0.0, -2.0, -2.0, 0.0]])
    rollout = SuccessRateDataModule._rollout_logprobs([sampled, expert], old, mask)
    # row 0: the three target tokens get the sampler's values in turn order; row 1 keeps old (weight 1)
    assert torch.allclose(rollout[0], torch.tensor([0.0, -0.1, -0.2, 0.0, -0.3]))
    assert torch.equal(rollout[1], old[1])


def test_shards_keep_a_task_on_one_rank_and_balance_the_copies():
    copies = ["a"] * 4 + ["b"] * 4 + ["c"] * 2 + ["d"] * 2
    shards = shard_groups(copies, 2)
    # largest groups first to the emptier rank: a -> 0, b -> 1, c -> 0 (4 vs 4, tie -> rank 0), d -> 1
    assert [copies[i] for i in shards[0]] == ["a"] * 4 + ["c"] * 2
    assert [copies[i] for i in shards[1]] == ["b"] * 4 + ["d"] * 2
    assert sorted(shards[0] + shards[1]) == list(range(len(copies)))
    assert shard_groups(copies, 1) == [list(range(len(copies)))]
