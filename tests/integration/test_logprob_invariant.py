"""Every algorithm trains on the context the policy acted in.

For each conf/algo file: one real round (MiniDesk, the shipped tiny policy, CPU float32, no update),
then for every trained token, log π_old on the training context (the old log-probs the round computes
right before the update, with the rollout's weights) must equal the log-prob the sampler recorded at
rollout time, within 1e-4. A trajectory-level sample whose screenshots or history differ from what the
policy saw when it acted breaks this by whole nats (the T-GRPO of earlier versions did).
"""

from __future__ import annotations

import pytest

from steprl.train import build
from tests.train_config import CONF, FAST, compose_train

ALGORITHMS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))
TOLERANCE = 1e-4


def max_gap(algo: str, tmp_path, acting_window: tuple[int, int] | None = None) -> tuple[float, int]:
    """(largest |old − rollout| log-prob over trained tokens, number of tokens compared) of one round."""
    parts = build(compose_train([f"algo={algo}", "seed=1", "algo.s_low=0.5", "env.max_steps=6", *FAST], tmp_path))
    try:
        runner = parts.datamodule.runner
        if acting_window is not None:  # act in another window than the one trained on
            runner.collector.history_responses, runner.collector.history_screenshots = acting_window
        round_ = runner.run(0, parts.module.policy)
    finally:
        parts.close()
    gap, tokens = 0.0, 0
    for sample in round_.samples:
        sampled = sample.rollout_logprobs()
        assert len(sampled) == len(sample.old_logprobs), sample.source  # every trained token was sampled
        gap = max([gap] + [abs(a - b) for a, b in zip(sample.old_logprobs, sampled)])
        tokens += len(sampled)
    return gap, tokens


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_training_logprobs_equal_the_rollout_logprobs(algo, tmp_path):
    gap, tokens = max_gap(algo, tmp_path)
    assert tokens > 0, "no trained token: the round produced no sample to check"
    assert gap <= TOLERANCE, f"{algo}: a trained token's log-prob differs by {gap:.3g} nats from the rollout's"


def test_the_invariant_catches_training_on_another_context(tmp_path):
    """T-GRPO as it used to be: acting in STEP's window (3 responses, no past screenshots) while
    training on the whole trajectory with its screenshots."""
    gap, tokens = max_gap("t_grpo", tmp_path, acting_window=(3, 0))
    assert tokens > 0 and gap > 1.0
