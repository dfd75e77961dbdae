"""The policy's inference mode: eval mode and no gradients, the previous mode restored after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def inference(policy: Any) -> Iterator[None]:
    """Run rollouts, SL-GRPO sampling and old log-probs without gradients, in eval mode (no
    dropout), and give the policy back in the mode it was in."""
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        policy.train(was_training)
