"""Warm-start helpers: learning-rate schedule, batch order, fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from steprl.policy.warmstart import batch_order, lr_factor, samples_fingerprint
from steprl.types import Dialogue, DialogueTurn, TrainingSample


def test_lr_factor_worked_values():
    # total 100: warm-up round(0.05 * 100) = 5 steps: (step + 1) / 5.
    assert lr_factor(0, 100) == pytest.approx(0.2)
    assert lr_factor(4, 100) == pytest.approx(1.0)
    # cosine part: progress = (step - 5) / (100 - 5 - 1) = (step - 5) / 94.
    assert lr_factor(5, 100) == pytest.approx(1.0)  # progress 0 -> 0.1 + 0.9 * 1
    assert lr_factor(52, 100) == pytest.approx(0.55)  # progress 0.5 -> 0.1 + 0.9 * 0.5 * (1 + cos(pi/2))
    assert lr_factor(99, 100) == pytest.approx(0.1)  # last step: the floor


def test_batch_order_covers_every_sample_each_pass():
    batches = batch_order(num_samples=10, steps=5, batch_size=4, seed=0)
    assert [len(b) for b in batches] == [4] * 5
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10))  # first pass: each sample once
    assert batch_order(10, 5, 4, seed=0) == batches and batch_order(10, 5, 4, seed=1) != batches
    # fewer samples than a batch: the batch is all of them
    assert sorted(batch_order(3, 1, 8, seed=0)[0]) == [0, 1, 2]


def test_samples_fingerprint_sees_screenshots_and_responses():
    def sample(pixel: int, response: str) -> TrainingSample:
        shot = np.full((4, 4, 3), pixel, dtype=np.uint8)
        return TrainingSample(Dialogue("x", [DialogueTurn(shot, response, trainable=True)]), advantage=1.0, task_id="t")

    base = samples_fingerprint([sample(0, "a")])
    assert samples_fingerprint([sample(0, "a")]) == base
    assert samples_fingerprint([sample(1, "a")]) != base
    assert samples_fingerprint([sample(0, "b")]) != base
