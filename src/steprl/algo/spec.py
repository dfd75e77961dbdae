"""The algorithm as a set of switches: STEP, T-GRPO, GiGPO and the ablations (docs/algorithm.md §6).

`AlgorithmSpec` is the schema of the `algo` config group: every knob, its type, STEP's default and its
validation. conf/algo/step.yaml instantiates it (`_target_: ...AlgorithmSpec.create`) with every key
written out for users to read; each other file of conf/algo/ states only what it changes from STEP
(tests/unit/test_algo_spec.py keeps step.yaml equal to these defaults). `build_samples` turns a
round's trajectories into training samples by reading the switches, never the algorithm's name, so
any combination (e.g. GiGPO advantages with SR-Traj sampling) is one config away. The three
extensions of docs/extensions.md are switches here too, off by default.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steprl.algo.adaptive_thresholds import RULES as BETA_RULES
from steprl.algo.adaptive_thresholds import BetaScheduler
from steprl.algo.advantages import gigpo_advantages, grpo_advantages, sr_adv_trajectory_advantages
from steprl.algo.augment import REWARD_FUNCTIONS, num_alternatives
from steprl.algo.failed_credit import BASELINES as FAILED_CREDIT_BASELINES
from steprl.algo.failed_credit import StateSuccessRecord, failed_step_advantages
from steprl.algo.loss import PolicyLoss, check_is_settings, check_loss_settings
from steprl.algo.sampling import SRTrajScheduler, TaskScheduler, UniformScheduler
from steprl.algo.samples import SampleOrigin, step_samples, trajectory_sample
from steprl.algo.success_rate import SuccessRateRecorder, is_success
from steprl.types import TrainingSample, Trajectory

SAMPLINGS = ("sr_traj", "uniform", "beta")
SAMPLE_LEVELS = ("step", "trajectory")
ADVANTAGES = ("sr_adv", "grpo", "gigpo")
STEP_NORMS = ("mean", "mean_std")
EPISODE_MEANS = ("trajectory", "step")
RECORD_SNAPSHOTS = ("before", "after")
AUG_REWARDS = (*REWARD_FUNCTIONS, "outcome")  # "outcome": continue each alternative with the policy (round.py)
AUG_SELECTS = ("s_low", "beta")


@dataclass
class AlgorithmSpec:
    """Every algorithm knob, with STEP's defaults. [reconstructed] marks choices the paper leaves open."""

    name: str = "step"  # a label for logs and run names; nothing dispatches on it
    # SR Recorder (§1)
    alpha: float = 0.5  # EMA weight of the newest round in ŝ_i [reconstructed]
    success_threshold: float = 1.0  # success(τ) = score ≥ threshold (binary envs: 1.0)
    success_rate_prior: str | None = None  # JSON file {task_id: rate} of base-model success rates
    # SR-Traj (§2)
    sampling: str = "sr_traj"  # "sr_traj" | "uniform" | "beta" (extension 3: Beta posterior per task)
    s0: float = 0.6  # cache upper bound and logistic midpoint (paper)
    kappa: float = 10.0  # logistic steepness κ [reconstructed]
    # Samples and advantages (§3, §6)
    sample_level: str = "step"  # "step" (history window) | "trajectory" (whole multi-turn sequence)
    use_failed_trajectories: bool = False  # False: only successful trajectories give samples
    advantage: str = "sr_adv"  # "sr_adv" (1 − ŝ_i) | "grpo" (group-normalised score) | "gigpo"
    sr_adv_unseen: str | float = "round"  # ŝ_i for a task never seen: "round" (this round's k/n) or a rate [reconstructed]
    sr_adv_record: str = "before"  # ŝ_i that SR-Adv reads: the record "before" or "after" this round's update [reconstructed]
    grpo_eps: float = 1e-6  # ε of (r − mean)/(std + ε)
    norm_by_std: bool = True  # divide episode-level group advantages by the std (False: Dr. GRPO / GiGPO F_norm = 1)
    gigpo_omega: float = 1.0  # ω: weight of the step-level advantage A^S
    gigpo_gamma: float = 0.95  # γ of the discounted step return R_t
    gigpo_step_norm: str = "mean"  # A^S normalisation: "mean" | "mean_std"
    gigpo_episode_mean: str = "trajectory"  # A^E group mean over "trajectory" (GiGPO paper, Eq. 3) or "step" (verl-agent)
    # History window of step samples, images of trajectory samples
    history_responses: int = 3  # k previous responses as text
    history_screenshots: int = 0  # m previous screenshots (m ≤ k)
    max_images: int = 5  # screenshots kept in a trajectory sample (T-GRPO)
    # SL-GRPO (§4)
    augment: bool = True
    s_low: float = 0.2  # augment steps of tasks with ŝ_i ≤ s_low (paper)
    slgrpo_record: str = "after"  # ŝ_i that SL-GRPO compares with s_low: "after" (first-round tasks qualify) or "before" [reconstructed]
    aug_reward: str = "equivalence"  # "equivalence" (action match) | "env" (same next state, needs snapshots)
    aug_weight: float = 1.0  # loss weight of augmentation samples [reconstructed]
    aug_temperature: float = 1.0  # sampling temperature of the alternatives [reconstructed]
    aug_radius_px: float = 20.0  # click points this close (pixels) count as the same action [reconstructed]
    aug_suffix: str = ""  # text appended to the prompt asking for a different action ("" = none)
    # Extension 1 (docs/extensions.md §1): credit for the steps of failed trajectories
    failed_credit: bool = False  # True: failed trajectories' steps get w·(v(s_{t+1}) − v(s_t)) (needs sr_adv, step)
    failed_credit_weight: float = 0.5  # w
    failed_credit_prior: float = 2.0  # β, pseudo-rollouts pulling v(s) towards the task's rate
    failed_credit_min_visits: float = 1.0  # visits by other rollouts before a state counts as known
    failed_credit_baseline: str = "state"  # "state" (v(s_t)) | "task" (p)
    failed_credit_terminal: bool = True  # a failed trajectory's final finished/call_user leads to v = 0
    failed_credit_decay: float = 1.0  # per-round decay of the state record's counts (1 = cumulative)
    # Extension 2 (§2): SL-GRPO alternatives judged by outcome (algo.aug_reward=outcome)
    aug_outcome_horizon: int | None = None  # H env steps per continuation, alternative included; None = to the episode's end
    aug_outcome_continuations: int = 1  # M continuations per alternative
    aug_outcome_rescore_original: bool = False  # also continue a_t M times; r_0 = their mean
    # Extension 3 (§3): thresholds from a Beta posterior per task (algo.sampling=beta, algo.aug_select=beta)
    aug_select: str = "s_low"  # SL-GRPO's task rule: "s_low" (ŝ_i ≤ s_low) | "beta"
    beta_rule: str = "group"  # "group" (next group of N, no threshold) | "interval" ([p_low, p_high])
    beta_prior_a: float = 1.0  # a0
    beta_prior_b: float = 1.0  # b0
    beta_decay: float = 0.5  # d: each round multiplies the counts by d before adding its own
    beta_min_informative: float = 0.05  # u_min: the cache holds known tasks with u ≥ u_min
    beta_replace_hopeless: bool = False  # also hand away copies of likely-hopeless tasks
    beta_p_low: float = 0.05  # interval rule: lower bound
    beta_p_high: float = 0.6  # interval rule: upper bound (s0's part)
    beta_aug_q: float = 0.5  # aug_select=beta: augment when P(hard) ≥ q
    # Policy loss (§5)
    clip_low: float = 0.2  # ε_low (ARPO)
    clip_high: float = 0.3  # ε_high (ARPO)
    dual_clip: float | None = None  # c for A < 0 (3 is usual); None = off
    kl_coef: float = 0.0  # KL to the reference policy (0 as in ARPO)
    kl_estimator: str = "k3"  # "k1" | "k2" | "k3"
    loss_agg: str = "token-mean"  # "token-mean" | "seq-mean-token-mean"
    entropy_coef: float = 0.0
    is_correction: str = "none"  # "none" | "tis": truncated importance sampling of the sampler's tokens
    is_cap: float = 2.0  # the largest importance weight "tis" keeps
    ppo_epochs: int = 2  # passes over the round's samples [chosen] for the tiny CPU policy; paper-scale experiments set 1

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def problems(self) -> list[str]:
        """Every bad value, one message each (empty when the spec is valid)."""
        found: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                found.append(message)

        def one_of(key: str, choices: tuple[str, ...]) -> None:
            value = getattr(self, key)
            need(value in choices, f"algo.{key}={value!r}: use one of {', '.join(choices)}.")

        one_of("sampling", SAMPLINGS)
        one_of("sample_level", SAMPLE_LEVELS)
        one_of("advantage", ADVANTAGES)
        one_of("gigpo_step_norm", STEP_NORMS)
        one_of("gigpo_episode_mean", EPISODE_MEANS)
        one_of("sr_adv_record", RECORD_SNAPSHOTS)
        one_of("slgrpo_record", RECORD_SNAPSHOTS)
        one_of("aug_reward", AUG_REWARDS)
        one_of("aug_select", AUG_SELECTS)
        one_of("failed_credit_baseline", FAILED_CREDIT_BASELINES)
        one_of("beta_rule", BETA_RULES)
        found.extend(self._extension_problems())
        need(0.0 < self.alpha <= 1.0, f"algo.alpha={self.alpha} must be in (0, 1].")
        need(
            0.0 < self.success_threshold <= 1.0,
            f"algo.success_threshold={self.success_threshold} must be in (0, 1] (success = score ≥ threshold).",
        )
        need(0.0 < self.s0 < 1.0, f"algo.s0={self.s0} must be in (0, 1): tasks with 0 < ŝ < s0 form the cache.")
        need(self.kappa > 0.0, f"algo.kappa={self.kappa} must be > 0 (the logistic's steepness).")
        need(0.0 <= self.s_low < 1.0, f"algo.s_low={self.s_low} must be in [0, 1).")
        need(
            not (self.augment and self.sampling == "sr_traj" and self.s_low >= self.s0),
            f"algo.s_low={self.s_low} must be below algo.s0={self.s0}: SL-GRPO targets the hardest tasks, "
            "SR-Traj the ones below s0.",
        )
        need(
            not (self.advantage == "sr_adv" and self.use_failed_trajectories),
            "algo.advantage=sr_adv gives failed trajectories no advantage: set algo.use_failed_trajectories=false "
            "(or algo.advantage=grpo to train on failures).",
        )
        need(
            not (self.advantage == "gigpo" and self.sample_level != "step"),
            "algo.advantage=gigpo gives one advantage per step: set algo.sample_level=step.",
        )
        need(
            not (self.sample_level == "trajectory" and (self.history_responses < self.max_images or self.history_screenshots < self.max_images - 1)),
            f"algo.sample_level=trajectory trains on the whole trajectory with up to max_images={self.max_images} screenshots; "
            "the policy must act in that same context: set algo.history_responses >= max_images and "
            "algo.history_screenshots >= max_images - 1 (conf/algo/t_grpo.yaml), or train each step in the acting window "
            "with algo=t_grpo_window.",
        )
        need(
            not (self.augment and self.sample_level != "step"),
            "algo.augment=true (SL-GRPO) augments step samples: set algo.sample_level=step or algo.augment=false.",
        )
        unseen_ok = self.sr_adv_unseen == "round" or (
            isinstance(self.sr_adv_unseen, numbers.Real)
            and not isinstance(self.sr_adv_unseen, bool)
            and 0.0 <= self.sr_adv_unseen <= 1.0
        )
        need(unseen_ok, f"algo.sr_adv_unseen={self.sr_adv_unseen!r}: use 'round' or a rate in [0, 1].")
        need(self.grpo_eps > 0.0, f"algo.grpo_eps={self.grpo_eps} must be > 0.")
        need(self.gigpo_omega >= 0.0, f"algo.gigpo_omega={self.gigpo_omega} must be >= 0.")
        need(0.0 < self.gigpo_gamma <= 1.0, f"algo.gigpo_gamma={self.gigpo_gamma} must be in (0, 1].")
        need(self.history_responses >= 0, f"algo.history_responses={self.history_responses} must be >= 0.")
        need(
            0 <= self.history_screenshots <= max(self.history_responses, 0),
            f"algo.history_screenshots={self.history_screenshots} must be in [0, history_responses={self.history_responses}]: "
            "a past screenshot is shown with the response that followed it.",
        )
        need(self.max_images >= 1, f"algo.max_images={self.max_images} must be >= 1.")
        need(self.aug_weight >= 0.0, f"algo.aug_weight={self.aug_weight} must be >= 0.")
        need(self.aug_temperature > 0.0, f"algo.aug_temperature={self.aug_temperature} must be > 0.")
        need(self.aug_radius_px >= 0.0, f"algo.aug_radius_px={self.aug_radius_px} must be >= 0.")
        need(self.ppo_epochs >= 1, f"algo.ppo_epochs={self.ppo_epochs} must be >= 1.")
        try:
            check_loss_settings(
                self.clip_low,
                self.clip_high,
                self.dual_clip,
                self.kl_coef,
                self.kl_estimator,
                self.loss_agg,
                self.entropy_coef,
            )
        except ValueError as error:
            found.append(str(error))
        try:
            check_is_settings(self.is_correction, self.is_cap)
        except ValueError as error:
            found.append(str(error))
        return found

    def _extension_problems(self) -> list[str]:
        """The knobs of the three extensions (docs/extensions.md)."""
        found: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                found.append(message)

        if self.failed_credit:
            need(
                self.advantage == "sr_adv" and self.sample_level == "step",
                "algo.failed_credit=true adds step advantages for failed trajectories next to SR-Adv: it needs "
                f"algo.advantage=sr_adv and algo.sample_level=step (got {self.advantage}, {self.sample_level}).",
            )
        need(self.failed_credit_weight >= 0.0, f"algo.failed_credit_weight={self.failed_credit_weight} must be >= 0.")
        need(self.failed_credit_prior >= 0.0, f"algo.failed_credit_prior={self.failed_credit_prior} must be >= 0.")
        need(self.failed_credit_min_visits > 0.0, f"algo.failed_credit_min_visits={self.failed_credit_min_visits} must be > 0.")
        need(0.0 < self.failed_credit_decay <= 1.0, f"algo.failed_credit_decay={self.failed_credit_decay} must be in (0, 1].")
        horizon = self.aug_outcome_horizon
        need(
            horizon is None or (isinstance(horizon, int) and not isinstance(horizon, bool) and horizon >= 1),
            f"algo.aug_outcome_horizon={horizon!r} must be an integer >= 1, or null (to the end of the episode).",
        )
        need(self.aug_outcome_continuations >= 1, f"algo.aug_outcome_continuations={self.aug_outcome_continuations} must be >= 1.")
        need(self.beta_prior_a > 0.0 and self.beta_prior_b > 0.0, f"algo.beta_prior_a={self.beta_prior_a} and algo.beta_prior_b={self.beta_prior_b} must be > 0 (1, 1 = uniform).")
        need(0.0 < self.beta_decay <= 1.0, f"algo.beta_decay={self.beta_decay} must be in (0, 1] (1 = cumulative counts).")
        need(0.0 <= self.beta_min_informative <= 1.0, f"algo.beta_min_informative={self.beta_min_informative} must be in [0, 1].")
        need(
            0.0 <= self.beta_p_low < self.beta_p_high <= 1.0,
            f"algo.beta_p_low={self.beta_p_low} and algo.beta_p_high={self.beta_p_high} need 0 <= p_low < p_high <= 1.",
        )
        need(0.0 < self.beta_aug_q <= 1.0, f"algo.beta_aug_q={self.beta_aug_q} must be in (0, 1].")
        return found

    @property
    def uses_beta_record(self) -> bool:
        """Whether a run keeps the Beta posterior per task (extension 3)."""
        return self.sampling == "beta" or (self.augment and self.aug_select == "beta")

    def validate(self) -> None:
        """Raise one ValueError listing every bad value, each with what to do."""
        found = self.problems()
        if found:
            raise ValueError(f"Invalid algorithm settings ({self.name}):\n  - " + "\n  - ".join(found))

    def validate_budget(self, rollouts_per_task: int) -> None:
        """Checks that need N = data.rollouts_per_task, which the spec does not hold."""
        found = []
        if rollouts_per_task < 1:
            found.append(f"data.rollouts_per_task={rollouts_per_task} must be >= 1.")
        elif self.advantage in ("grpo", "gigpo") and rollouts_per_task < 2:
            found.append(
                f"algo.advantage={self.advantage} compares the N rollouts of a task; with data.rollouts_per_task="
                f"{rollouts_per_task} every group has one member and every advantage is 0. Use N >= 2."
            )
        if self.augment and rollouts_per_task >= 1 and num_alternatives(rollouts_per_task) < 1:
            found.append(
                f"SL-GRPO samples N/2 − 1 alternatives per step, 0 with data.rollouts_per_task={rollouts_per_task}: "
                "use N >= 4 or set algo.augment=false."
            )
        if found:
            raise ValueError(f"Invalid rollout budget for {self.name}:\n  - " + "\n  - ".join(found))

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, **values: Any) -> AlgorithmSpec:
        """The Hydra target of conf/algo/*.yaml: `from_config` with keyword arguments."""
        return cls.from_config(values)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AlgorithmSpec:
        """From the algo config group (a dict or DictConfig); unknown keys are an error naming the
        closest known key, so a typo never silently keeps a default."""
        known = [f.name for f in dataclasses.fields(cls)]
        values = {str(k): v for k, v in dict(config).items() if k != "_target_"}
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ValueError(f"Unknown algo setting {', '.join(hints)}. Known settings: {', '.join(known)}.")
        return cls(**values)





# --------------------------------------------------------------------------------------------
# Building the parts from a spec
# --------------------------------------------------------------------------------------------

AdvantageFunction = Callable[[AlgorithmSpec, Sequence[Trajectory], SuccessRateRecorder], list[Any]]


def _sr_adv(spec: AlgorithmSpec, trajectories: Sequence[Trajectory], recorder: SuccessRateRecorder) -> list[Any]:
    return sr_adv_trajectory_advantages(trajectories, recorder, spec.success_threshold, spec.sr_adv_unseen)


def _grpo(spec: AlgorithmSpec, trajectories: Sequence[Trajectory], recorder: SuccessRateRecorder) -> list[Any]:
    scores = [t.score for t in trajectories]
    return list(grpo_advantages(scores, [t.task.id for t in trajectories], spec.grpo_eps, spec.norm_by_std))


def _gigpo(spec: AlgorithmSpec, trajectories: Sequence[Trajectory], recorder: SuccessRateRecorder) -> list[Any]:
    return gigpo_advantages(
        trajectories,
        omega=spec.gigpo_omega,
        gamma=spec.gigpo_gamma,
        step_norm=spec.gigpo_step_norm,
        episode_norm_by_std=spec.norm_by_std,
        eps=spec.grpo_eps,
        episode_mean=spec.gigpo_episode_mean,
    )


#: algo.advantage → per trajectory: a number, one number per step, or None (no samples).
ADVANTAGE_FUNCTIONS: dict[str, AdvantageFunction] = {"sr_adv": _sr_adv, "grpo": _grpo, "gigpo": _gigpo}


def failed_credit_advantages(
    spec: AlgorithmSpec, trajectories: Sequence[Trajectory], state_record: StateSuccessRecord | None
) -> list[np.ndarray | None]:
    """Extension 1 (`algo.failed_credit`): one advantage per step of each failed trajectory, None
    for the others; `state_record` holds past rounds (before this round's update)."""
    return failed_step_advantages(
        trajectories,
        spec.success_threshold,
        state_record,
        weight=spec.failed_credit_weight,
        prior_strength=spec.failed_credit_prior,
        min_visits=spec.failed_credit_min_visits,
        baseline=spec.failed_credit_baseline,
        penalise_terminal=spec.failed_credit_terminal,
    )


def build_samples_with_origins(
    spec: AlgorithmSpec,
    trajectories: Sequence[Trajectory],
    recorder: SuccessRateRecorder,
    state_record: StateSuccessRecord | None = None,
) -> list[tuple[TrainingSample, SampleOrigin]]:
    """`build_samples`, each sample paired with its `SampleOrigin`.

    With `algo.failed_credit` the steps of failed trajectories become samples too, with the
    advantages of `failed_credit_advantages` (`state_record`: past rounds' state counts); a step
    whose advantage is exactly 0 (nothing known about where it led) carries no gradient and is
    not made into a sample.
    """
    valid = [t for t in trajectories if t.valid]
    advantages = ADVANTAGE_FUNCTIONS[spec.advantage](spec, valid, recorder)
    failed_credit = failed_credit_advantages(spec, valid, state_record) if spec.failed_credit else [None] * len(valid)
    pairs: list[tuple[TrainingSample, SampleOrigin]] = []
    for trajectory, advantage, credit in zip(valid, advantages, failed_credit):
        if credit is not None and advantage is None and trajectory.turns:
            samples = step_samples(
                trajectory, credit, history_responses=spec.history_responses, history_screenshots=spec.history_screenshots
            )
            pairs.extend((sample, SampleOrigin(trajectory, t)) for t, sample in enumerate(samples) if credit[t] != 0.0)
            continue
        if advantage is None or not trajectory.turns:
            continue
        if not spec.use_failed_trajectories and not is_success(trajectory, spec.success_threshold):
            continue
        if spec.sample_level == "step":
            per_step = advantage if isinstance(advantage, np.ndarray) else float(advantage)
            samples = step_samples(
                trajectory,
                per_step,
                history_responses=spec.history_responses,
                history_screenshots=spec.history_screenshots,
            )
            pairs.extend((sample, SampleOrigin(trajectory, t)) for t, sample in enumerate(samples))
        else:
            sample = trajectory_sample(trajectory, float(advantage), max_images=spec.max_images)
            pairs.append((sample, SampleOrigin(trajectory, None)))
    return pairs


def build_samples(
    spec: AlgorithmSpec, trajectories: Sequence[Trajectory], recorder: SuccessRateRecorder
) -> list[TrainingSample]:
    """A round's trajectories → training samples with advantages (without SL-GRPO, which needs
    the policy: see `augment.py`).

    Env-error rollouts are dropped first (docs/algorithm.md §1); advantages follow `spec.advantage`
    (SR-Adv reads ŝ_i from `recorder`: the round passes the record before or after this round's
    update, following `spec.sr_adv_record`);
    failed trajectories give samples only with `use_failed_trajectories`; each kept trajectory
    becomes step samples or one trajectory sample following `spec.sample_level`.
    """
    return [sample for sample, _ in build_samples_with_origins(spec, trajectories, recorder)]


def build_recorder(spec: AlgorithmSpec) -> SuccessRateRecorder:
    """The SR Recorder of a run: α from the spec, the prior file when one is given."""
    if spec.success_rate_prior:
        return SuccessRateRecorder.from_file(spec.success_rate_prior, alpha=spec.alpha)
    return SuccessRateRecorder(alpha=spec.alpha)


def build_scheduler(spec: AlgorithmSpec, task_ids: Sequence[str], tasks_per_epoch: int, seed: int) -> TaskScheduler:
    """SR-Traj, Beta-posterior (extension 3) or uniform scheduling, following `spec.sampling`."""
    if spec.sampling == "beta":
        return BetaScheduler(task_ids, tasks_per_epoch, seed, **beta_scheduler_knobs(spec))
    if spec.sampling == "sr_traj":
        return SRTrajScheduler(task_ids, tasks_per_epoch, seed, s0=spec.s0, kappa=spec.kappa)
    return UniformScheduler(task_ids, tasks_per_epoch, seed, s0=spec.s0)


def beta_scheduler_knobs(spec: AlgorithmSpec) -> dict[str, Any]:
    """The `BetaScheduler` / `BetaRecord` settings of a spec (algo.beta_*)."""
    return {
        "rule": spec.beta_rule,
        "p_low": spec.beta_p_low,
        "p_high": spec.beta_p_high,
        "min_informative": spec.beta_min_informative,
        "replace_hopeless": spec.beta_replace_hopeless,
        "prior_a": spec.beta_prior_a,
        "prior_b": spec.beta_prior_b,
        "decay": spec.beta_decay,
    }


def build_state_record(spec: AlgorithmSpec) -> StateSuccessRecord | None:
    """The per-state success record of extension 1, or None when algo.failed_credit is off."""
    return StateSuccessRecord(decay=spec.failed_credit_decay) if spec.failed_credit else None


def build_loss(spec: AlgorithmSpec) -> PolicyLoss:
    """The policy loss with the spec's clipping, KL, aggregation and entropy settings."""
    return PolicyLoss.from_spec(spec)
