"""What one RL iteration (epoch) produced: the record the callbacks log."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RoundReport:
    """Counts and timings of one round, on this rank (success statistics are global after the
    datamodule's all-gather: every rank holds the same `task_counts` and recorder summaries)."""

    epoch: int
    started_at: float  # time.perf_counter() when the round began (train_dataloader was called)
    # rollouts on this rank
    trajectories: int = 0
    valid: int = 0
    successes: int = 0
    env_errors: int = 0
    env_steps: int = 0
    invalid_actions: int = 0
    # all ranks: task_id -> (successes, valid rollouts) this round
    task_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    # SR-Traj and the success-rate record after this round's update
    replaced_copies: int = 0
    cache_size: int = 0
    sr_mean: float = 0.0
    above_s0: int = 0
    solve_all: int = 0
    solve_none: int = 0
    solve_partial: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    # training samples on this rank
    samples: int = 0
    aug_samples: int = 0
    adv_mean: float = 0.0
    # wall times of the parts of the round (seconds)
    rollout_s: float = 0.0
    env_s: float = 0.0
    generate_s: float = 0.0
    augment_s: float = 0.0
    old_logprob_s: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.successes / self.valid if self.valid else 0.0

    @property
    def mean_length(self) -> float:
        return self.env_steps / self.valid if self.valid else 0.0

    @property
    def invalid_action_rate(self) -> float:
        return self.invalid_actions / self.env_steps if self.env_steps else 0.0
