"""Advantages: group-normalised (T-GRPO), success-rate weighted (SR-Adv), GiGPO, SL-GRPO groups.

docs/algorithm.md §3, §4 and §6. Every function here takes numbers (or trajectories, for the ones that
need their structure) and returns numbers; which samples they end up on is `samples.py`'s job.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from steprl.algo.success_rate import SuccessRateRecorder, counts_from_trajectories, is_success
from steprl.types import Observation, Trajectory

# --------------------------------------------------------------------------------------------
# Group normalisation (T-GRPO, GiGPO's A^E, SL-GRPO)
# --------------------------------------------------------------------------------------------


def grpo_advantages(
    scores: Sequence[float] | np.ndarray,
    group_ids: Sequence[Hashable],
    eps: float = 1e-6,
    norm_by_std: bool = True,
) -> np.ndarray:
    """A_k = (r_k − mean_g) / (std_g + ε) within each group g (T-GRPO).

    std is the sample (Bessel-corrected, ddof=1) standard deviation, as in verl and TRL;
    `norm_by_std=False` gives A_k = r_k − mean_g (Dr. GRPO, GiGPO's F_norm = 1). A group of one and
    a group whose rewards are all equal get A = 0 exactly (no signal, and no NaN from 0/0).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) != len(group_ids):
        raise ValueError(f"grpo_advantages needs one group id per score; got {scores.shape} scores and {len(group_ids)} ids.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("grpo_advantages got a NaN or infinite reward; check the environment's evaluator.")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, group in enumerate(group_ids):
        members[group].append(index)
    advantages = np.zeros_like(scores)
    for indices in members.values():
        group_scores = scores[indices]
        if len(indices) < 2 or group_scores.max() == group_scores.min():
            continue  # stays 0: nothing to compare against
        centred = group_scores - group_scores.mean()
        advantages[indices] = centred / (group_scores.std(ddof=1) + eps) if norm_by_std else centred
    return advantages


def slgrpo_group_advantages(rewards: Sequence[float], eps: float = 1e-6) -> np.ndarray | None:
    """SL-GRPO: A_j = (r_j − mean(r_G)) / (std(r_G) + ε) over one step's group G (original first,
    r = 1, then the alternatives); sample std. A group with equal rewards carries no signal and is
    dropped: None."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if len(rewards) < 2 or rewards.max() == rewards.min():
        return None
    return grpo_advantages(rewards, [0] * len(rewards), eps=eps, norm_by_std=True)


# --------------------------------------------------------------------------------------------
# SR-Adv (STEP)
# --------------------------------------------------------------------------------------------


def sr_advantage(success_rate: float) -> float:
    """SR-Adv: A = 1 − ŝ_i for every step of a successful trajectory of task i; ŝ_i is read
    before this round's update [reconstructed]. Harder tasks (low ŝ_i) push harder."""
    if not 0.0 <= success_rate <= 1.0:
        raise ValueError(f"A success rate must be in [0, 1], got {success_rate}.")
    return 1.0 - success_rate


def sr_adv_trajectory_advantages(
    trajectories: Sequence[Trajectory],
    recorder_before_update: SuccessRateRecorder,
    success_threshold: float | None = None,
    unseen_rate: str | float = "round",
) -> list[float | None]:
    """One SR-Adv advantage per trajectory: 1 − ŝ_i for successes, None for failures and
    env-error rollouts (they give no samples).

    `unseen_rate` decides ŝ_i for a task the recorder has never seen [reconstructed knob]:
    "round" (default) uses this round's own k_i/n_i over valid rollouts, the value the recorder
    will hold after its first update; a number in [0, 1] uses that fixed rate (e.g. 0.5).
    """
    if isinstance(unseen_rate, str) and unseen_rate != "round":
        raise ValueError(f"algo.sr_adv_unseen={unseen_rate!r}: use 'round' or a number in [0, 1].")
    round_counts = counts_from_trajectories(trajectories, success_threshold)
    advantages: list[float | None] = []
    for trajectory in trajectories:
        if not trajectory.valid or not is_success(trajectory, success_threshold):
            advantages.append(None)
            continue
        task_id = trajectory.task.id
        rate = recorder_before_update.get(task_id)
        if rate is None:
            k, n = round_counts[task_id]
            rate = k / n if unseen_rate == "round" else float(unseen_rate)
        advantages.append(sr_advantage(rate))
    return advantages


# --------------------------------------------------------------------------------------------
# GiGPO
# --------------------------------------------------------------------------------------------


def discounted_returns(num_steps: int, final_reward: float, gamma: float) -> np.ndarray:
    """R_t = Σ_{k≥t} γ^(k−t)·r_k with the only reward at the last step (r_{T−1} = the score):
    R_t = γ^(T−1−t)·score, t = 0 .. T−1."""
    exponents = np.arange(num_steps - 1, -1, -1, dtype=np.float64)
    return final_reward * np.power(gamma, exponents)


def anchor_key(observation: Observation) -> str:
    """The anchor state of a step: the environment's `state_hash`, or (when the environment gives
    none) a hash of the screenshot's pixels, so identical screens still group together."""
    if observation.state_hash:
        return observation.state_hash
    screenshot = np.ascontiguousarray(observation.screenshot)
    digest = hashlib.sha1(screenshot.tobytes())
    digest.update(repr(screenshot.shape).encode())
    return "pixels:" + digest.hexdigest()


def episode_advantages(
    scores: Sequence[float],
    group_ids: Sequence[Hashable],
    lengths: Sequence[int],
    mean_over: str = "trajectory",
    eps: float = 1e-6,
    norm_by_std: bool = False,
) -> np.ndarray:
    """GiGPO's episode-level advantage A^E, one per trajectory.

    `mean_over="trajectory"` (the GiGPO paper's Eq. 3): every trajectory of the group counts once,
    A^E_j = r_j − mean_j(r) (`grpo_advantages`). `"step"` (verl-agent's default, where each step sample
    carries its episode's return): trajectory j counts T_j times, so the group mean is
    Σ_j T_j·r_j / Σ_j T_j and long trajectories weigh more; the std (with `norm_by_std`) is the
    sample std of those step-level values.
    """
    if mean_over not in ("trajectory", "step"):
        raise ValueError(f"algo.gigpo_episode_mean={mean_over!r}: use 'trajectory' or 'step'.")
    if mean_over == "trajectory":
        return grpo_advantages(scores, group_ids, eps=eps, norm_by_std=norm_by_std)
    owner = [j for j, length in enumerate(lengths) for _ in range(max(int(length), 1))]
    per_step = grpo_advantages([scores[j] for j in owner], [group_ids[j] for j in owner], eps=eps, norm_by_std=norm_by_std)
    first = {j: per_step[k] for k, j in reversed(list(enumerate(owner)))}
    return np.array([first[j] for j in range(len(scores))], dtype=np.float64)


def gigpo_advantages(
    trajectories: Sequence[Trajectory],
    omega: float = 1.0,
    gamma: float = 0.95,
    step_norm: str = "mean",
    episode_norm_by_std: bool = False,
    eps: float = 1e-6,
    episode_mean: str = "trajectory",
) -> list[np.ndarray | None]:
    """GiGPO: per step, A = A^E + ω·A^S (None for env-error rollouts).

    A^E is the group advantage of the trajectory's score among the task's valid rollouts this round
    (`episode_advantages`: mean over trajectories or over steps, std division if `episode_norm_by_std`). A^S groups all steps of one task's
    rollouts by anchor state (`anchor_key`) and scores them by the discounted return R_t;
    `step_norm="mean"`: A^S = R_t − mean of its anchor group (F_norm = 1, default),
    `"mean_std"`: divided by (sample std + ε). Anchor groups of one step get A^S = 0.
    """
    if step_norm not in ("mean", "mean_std"):
        raise ValueError(f"algo.gigpo_step_norm={step_norm!r}: use 'mean' or 'mean_std'.")
    valid = [i for i, t in enumerate(trajectories) if t.valid]
    episode = episode_advantages(
        [trajectories[i].score for i in valid],
        [trajectories[i].task.id for i in valid],
        [trajectories[i].length for i in valid],
        mean_over=episode_mean,
        eps=eps,
        norm_by_std=episode_norm_by_std,
    )
    # A^S: every step of every valid trajectory, grouped by (task, anchor state), in order.
    returns: list[float] = []
    anchors: list[tuple[str, str]] = []
    for i in valid:
        trajectory = trajectories[i]
        returns.extend(discounted_returns(trajectory.length, trajectory.score, gamma))
        anchors.extend((trajectory.task.id, anchor_key(turn.observation)) for turn in trajectory.turns)
    step = grpo_advantages(returns, anchors, eps=eps, norm_by_std=step_norm == "mean_std")

    result: list[np.ndarray | None] = [None] * len(trajectories)
    offset = 0
    for i, episode_advantage in zip(valid, episode):
        length = trajectories[i].length
        result[i] = episode_advantage + omega * step[offset : offset + length]
        offset += length
    return result
