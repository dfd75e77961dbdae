"""The algorithm core: pure functions and small stateful records, no Lightning, envs or models.

success_rate (ŝ_i), sampling (SR-Traj), advantages (T-GRPO, SR-Adv, GiGPO, SL-GRPO groups),
samples (trajectories → training samples), augment (SL-GRPO), loss (PPO-clip), spec (the switches
that make STEP, the baselines and the ablations). See docs/algorithm.md.
"""

from steprl.algo.advantages import (
    gigpo_advantages,
    grpo_advantages,
    slgrpo_group_advantages,
    sr_adv_trajectory_advantages,
    sr_advantage,
)
from steprl.algo.augment import augmentation_samples, low_success_rule, num_alternatives, select_augmentation_steps
from steprl.algo.loss import PolicyLoss, policy_loss
from steprl.algo.sampling import Allocation, SRTrajScheduler, UniformScheduler, replacement_probability
from steprl.algo.samples import actions_equivalent, step_samples, trajectory_sample
from steprl.algo.spec import (
    AlgorithmSpec,
    SampleOrigin,
    build_loss,
    build_recorder,
    build_samples,
    build_samples_with_origins,
    build_scheduler,
)
from steprl.algo.success_rate import SuccessRateRecorder, counts_from_trajectories, is_success

__all__ = [
    "AlgorithmSpec",
    "Allocation",
    "PolicyLoss",
    "SRTrajScheduler",
    "SampleOrigin",
    "SuccessRateRecorder",
    "UniformScheduler",
    "actions_equivalent",
    "augmentation_samples",
    "build_loss",
    "build_recorder",
    "build_samples",
    "build_samples_with_origins",
    "build_scheduler",
    "counts_from_trajectories",
    "gigpo_advantages",
    "grpo_advantages",
    "is_success",
    "num_alternatives",
    "policy_loss",
    "replacement_probability",
    "select_augmentation_steps",
    "low_success_rule",
    "slgrpo_group_advantages",
    "sr_adv_trajectory_advantages",
    "sr_advantage",
    "step_samples",
    "trajectory_sample",
]
