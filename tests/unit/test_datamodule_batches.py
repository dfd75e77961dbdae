"""Batch bookkeeping: the sampler's log-probs of a sample, and sharding a round's copies over ranks."""

from __future__ import annotations

import numpy as np

from steprl.round import shard_groups
from steprl.types import Dialogue, DialogueTurn, TrainingSample


def sample(turns):
    return TrainingSample(Dialogue("do it", turns), advantage=1.0, task_id="t")


def test_rollout_logprobs_in_target_order_or_none_when_a_response_was_not_sampled():
    image = np.zeros((4, 4, 3), np.uint8)
    sampled = sample([
        DialogueTurn(None, "a", (1, 2), trainable=True, response_logprobs=(-0.1, -0.2)),
        DialogueTurn(image, "z", (9,), trainable=False),  # context: not a target
        DialogueTurn(image, "b", (3,), trainable=True, response_logprobs=(-0.3,)),
    ])
    assert sampled.rollout_logprobs() == (-0.1, -0.2, -0.3)
    expert = sample([DialogueTurn(image, "c", (), trainable=True)])  # no sampler log-probs
    assert expert.rollout_logprobs() == ()
    partial = sample([DialogueTurn(image, "c", (4, 5), trainable=True, response_logprobs=(-0.5,))])
    assert partial.rollout_logprobs() == ()  # one log-prob for two ids: not the sampler's record


def test_shards_keep_a_task_on_one_rank_and_balance_the_copies():
    copies = ["a"] * 4 + ["b"] * 4 + ["c"] * 2 + ["d"] * 2
    shards = shard_groups(copies, 2)
    # largest groups first to the emptier rank: a -> 0, b -> 1, c -> 0 (4 vs 4, tie -> rank 0), d -> 1
    assert [copies[i] for i in shards[0]] == ["a"] * 4 + ["c"] * 2
    assert [copies[i] for i in shards[1]] == ["b"] * 4 + ["d"] * 2
    assert sorted(shards[0] + shards[1]) == list(range(len(copies)))
    assert shard_groups(copies, 1) == [list(range(len(copies)))]
