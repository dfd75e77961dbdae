"""Extension 3: thresholds that set themselves (docs/extensions.md, section 3).

STEP's s0 (which tasks are mastered, SR-Traj) and s_low (which tasks are hard, SL-GRPO) are fixed
by hand and compared with a point estimate ŝ_i, so a task solved 1 time out of 1 looks mastered.
Here each task keeps a Beta posterior over its success probability p_i,

    p_i ~ Beta(a_i, b_i),   a_i = a0 + k_i,   b_i = b0 + n_i − k_i,

from its (discounted) success counts k_i of n_i valid rollouts: each round multiplies the counts by
`decay` d before adding the new ones, so a round r rounds old weighs d^r (d = 1: cumulative; the
default d = 0.5 = 1 − α weighs past rounds as the EMA of ŝ_i does, while the posterior's width
still says how many rollouts stand behind the rate). a0 = b0 = 1 (uniform).

Two rules judge a task; the default needs no threshold at all:

- "group": what the next group of N rollouts (N = data.rollouts_per_task) will look like, under the
  posterior predictive: mastered m_i = E[p^N] (all N succeed), hopeless h_i = E[(1 − p)^N] (all
  fail), informative u_i = 1 − m_i − h_i (a mixed group, the only kind a group comparison learns
  from). E[p^N] = Π_{j=0}^{N−1} (a + j) / (a + b + j).
- "interval": m_i = P(p > p_high), h_i = P(p < p_low), u_i = P(p_low ≤ p ≤ p_high), from the
  regularised incomplete beta function I_x(a, b) (`beta_cdf`); p_high plays s0's part.

SR-Traj with the posterior (`sampling: beta`): each copy of a known task is replaced with probability
p_rep,i = m_i (+ h_i with `replace_hopeless`), by a task drawn from the cache {j known : u_j ≥ u_min}
with probability u_j / Σ u (`min_informative` u_min, default 0.05). SL-GRPO with the posterior
(`beta_low_success_rule`, a predicate for `augment.select_augmentation_steps`): augment a known task when P(at most one success among N) ≥ q ("group"; default q = 0.5), or when
P(p ≤ s_low) ≥ q ("interval").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steprl.algo.sampling import Allocation, TaskScheduler, replace_copies
from steprl.algo.success_rate import Counts, SuccessRateRecorder

RULES = ("group", "interval")

# --------------------------------------------------------------------------------------------
# The Beta distribution
# --------------------------------------------------------------------------------------------


def beta_cdf(x: float, a: float, b: float, tol: float = 1e-13, max_terms: int = 1000) -> float:
    """P(p ≤ x) for p ~ Beta(a, b): the regularised incomplete beta function I_x(a, b).

    I_x(a, b) = x^a (1 − x)^b / (a·B(a, b)) · 1 / (1 + d_1 / (1 + d_2 / (1 + …))) with
    d_{2m+1} = −(a + m)(a + b + m)·x / ((a + 2m)(a + 2m + 1)) and d_{2m} = m(b − m)·x / ((a + 2m − 1)(a + 2m)),
    evaluated by the modified Lentz method; for x above the mean-like point (a + 1)/(a + b + 2)
    the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) keeps the fraction converging fast.
    """
    if a <= 0.0 or b <= 0.0:
        raise ValueError(f"Beta parameters must be > 0, got a={a}, b={b}.")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - beta_cdf(1.0 - x, b, a, tol, max_terms)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0  # f converges to 1 + the fraction
    for i in range(max_terms):
        m = i // 2
        if i == 0:
            numerator = 1.0
        elif i % 2:
            numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / (c if abs(c) > tiny else tiny)
        f *= c * d
        if abs(1.0 - c * d) < tol:
            return min(max(math.exp(log_front) * (f - 1.0) / a, 0.0), 1.0)
    raise ArithmeticError(f"beta_cdf({x}, {a}, {b}) did not converge in {max_terms} terms.")


def beta_power_mean(a: float, b: float, n: int) -> float:
    """E[p^n] for p ~ Beta(a, b) = B(a + n, b) / B(a, b) = Π_{j=0}^{n−1} (a + j) / (a + b + j):
    the posterior predictive chance that n new rollouts all succeed."""
    result = 1.0
    for j in range(n):
        result *= (a + j) / (a + b + j)
    return result


@dataclass(frozen=True)
class TaskOutlook:
    """How a task's next rollouts look under its posterior: mastered m, informative u, hopeless h
    (for the "group" rule they are the chances of all-success, mixed and all-failure groups and
    sum to 1; for "interval" the posterior mass above, inside and below [p_low, p_high])."""

    mastered: float
    informative: float
    hopeless: float


def task_outlook(
    a: float, b: float, rule: str = "group", group_size: int = 8, p_low: float = 0.05, p_high: float = 0.6
) -> TaskOutlook:
    """m, u, h of one task with posterior Beta(a, b) (formulas: module docstring)."""
    if rule == "group":
        if group_size < 1:
            raise ValueError(f"data.rollouts_per_task (N) = {group_size}; it must be at least 1.")
        mastered, hopeless = beta_power_mean(a, b, group_size), beta_power_mean(b, a, group_size)
        if group_size == 1:  # one rollout is never a mixed group: m + h = 1 already
            return TaskOutlook(mastered, 0.0, hopeless)
        return TaskOutlook(mastered, max(1.0 - mastered - hopeless, 0.0), hopeless)
    if rule == "interval":
        if not 0.0 <= p_low < p_high <= 1.0:
            raise ValueError(f"algo.beta_p_low={p_low} and algo.beta_p_high={p_high} need 0 <= p_low < p_high <= 1.")
        below, up_to_high = beta_cdf(p_low, a, b), beta_cdf(p_high, a, b)
        return TaskOutlook(1.0 - up_to_high, up_to_high - below, below)
    raise ValueError(f"algo.beta_rule={rule!r}: use one of {', '.join(RULES)}.")


def at_most_one_success(a: float, b: float, group_size: int) -> float:
    """P(k ≤ 1 of N) under the posterior predictive (beta-binomial):
    E[(1 − p)^N] + N·E[p(1 − p)^(N−1)], with E[p(1 − p)^m] = a/(a + b) · Π_{j<m} (b + j)/(a + 1 + b + j)."""
    if group_size < 1:
        raise ValueError(f"data.rollouts_per_task (N) = {group_size}; it must be at least 1.")
    none = beta_power_mean(b, a, group_size)
    one = group_size * a / (a + b) * beta_power_mean(b, a + 1.0, group_size - 1)
    return none + one


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------


class BetaRecord:
    """Discounted success counts (k_i, n_i) per task and their Beta posteriors; checkpointed."""

    def __init__(self, prior_a: float = 1.0, prior_b: float = 1.0, decay: float = 0.5) -> None:
        if prior_a <= 0.0 or prior_b <= 0.0:
            raise ValueError(f"algo.beta_prior=[{prior_a}, {prior_b}]: both pseudo-counts must be > 0 (1, 1 = uniform).")
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"algo.beta_decay={decay} must be in (0, 1] (1 = cumulative counts).")
        self.prior_a, self.prior_b, self.decay = float(prior_a), float(prior_b), float(decay)
        self._counts: dict[str, list[float]] = {}

    def update(self, results: Mapping[str, Counts]) -> None:
        """One round, from `counts_from_trajectories`: every known task's counts × d, then + (k_i, n_i).
        Tasks with n_i = 0 (all rollouts crashed) add nothing."""
        checked = {str(task): _check_counts(task, counts) for task, counts in results.items()}
        if self.decay < 1.0:
            self._counts = {task: [k * self.decay, n * self.decay] for task, (k, n) in self._counts.items()}
        for task_id, (k, n) in checked.items():
            if n == 0:
                continue
            entry = self._counts.setdefault(task_id, [0.0, 0.0])
            entry[0] += k
            entry[1] += n

    def known(self, task_id: str) -> bool:
        return task_id in self._counts

    def counts(self, task_id: str) -> tuple[float, float] | None:
        """(k_i, n_i) after discounting, or None for a task never observed."""
        entry = self._counts.get(task_id)
        return None if entry is None else (entry[0], entry[1])

    def posterior(self, task_id: str) -> tuple[float, float]:
        """(a_i, b_i) = (a0 + k_i, b0 + n_i − k_i); the prior for a task never observed."""
        k, n = self._counts.get(task_id, (0.0, 0.0))
        return self.prior_a + k, self.prior_b + n - k

    def mean(self, task_id: str) -> float:
        """The posterior mean a_i / (a_i + b_i)."""
        a, b = self.posterior(task_id)
        return a / (a + b)

    @property
    def task_ids(self) -> list[str]:
        """Known tasks, sorted."""
        return sorted(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def state_dict(self) -> dict[str, Any]:
        """Plain python types only. The prior and decay are configuration, not state."""
        return {"counts": {task: list(counts) for task, counts in self._counts.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "counts" not in state:
            raise ValueError("Not a BetaRecord state: the 'counts' entry is missing.")
        self._counts = {str(task): list(_check_counts(task, counts, exact=False)) for task, counts in dict(state["counts"]).items()}

    def __repr__(self) -> str:
        return f"BetaRecord(prior=({self.prior_a}, {self.prior_b}), decay={self.decay}, tasks={len(self)})"


def _check_counts(task_id: str, counts: Any, exact: bool = True) -> tuple[float, float]:
    try:
        k, n = (float(c) for c in counts)
    except (TypeError, ValueError):
        raise ValueError(f"Task '{task_id}': expected (successes k, rollouts n), got {counts!r}.") from None
    if not (math.isfinite(k) and math.isfinite(n)) or k < 0 or n < 0 or k > n + (0 if exact else 1e-9):
        raise ValueError(f"Task '{task_id}': successes k={k} and rollouts n={n} need 0 <= k <= n.")
    return k, n


# --------------------------------------------------------------------------------------------
# SR-Traj with the posterior
# --------------------------------------------------------------------------------------------


@dataclass
class BetaPlan:
    """What `beta_reallocate` uses: p_rep per known task, the cache and its draw weights (sum 1)."""

    replacement: dict[str, float]
    cache: list[str]
    weights: list[float]


def beta_plan(
    record: BetaRecord,
    group_size: int,
    rule: str = "group",
    p_low: float = 0.05,
    p_high: float = 0.6,
    min_informative: float = 0.05,
    replace_hopeless: bool = False,
) -> BetaPlan:
    """p_rep,i = m_i (+ h_i with `replace_hopeless`) for every known task; the cache is the known
    tasks with u_i ≥ `min_informative`, sorted by id, drawn with probability u_j / Σ u."""
    if not 0.0 <= min_informative <= 1.0:
        raise ValueError(f"algo.beta_min_informative={min_informative} must be in [0, 1].")
    replacement: dict[str, float] = {}
    cache: list[str] = []
    informative: list[float] = []
    for task_id in record.task_ids:
        outlook = task_outlook(*record.posterior(task_id), rule=rule, group_size=group_size, p_low=p_low, p_high=p_high)
        replacement[task_id] = min(outlook.mastered + (outlook.hopeless if replace_hopeless else 0.0), 1.0)
        if outlook.informative >= min_informative and outlook.informative > 0.0:
            cache.append(task_id)
            informative.append(outlook.informative)
    total = sum(informative)
    return BetaPlan(replacement, cache, [u / total for u in informative])


def beta_reallocate(
    task_ids: Sequence[str],
    rollouts_per_task: int,
    record: BetaRecord,
    rng: np.random.Generator,
    **plan_knobs: Any,
) -> Allocation:
    """B scheduled task ids × N copies → the B·N copies, as `SRTrajScheduler.reallocate` but with
    the posterior: each copy of a known task is replaced with probability p_rep,i by a cache task
    drawn by weight (one `rng.random()` to decide, one to pick). Unseen tasks are never replaced;
    with an empty cache nothing is."""
    if rollouts_per_task < 1:
        raise ValueError(f"data.rollouts_per_task (N) = {rollouts_per_task}; it must be at least 1.")
    plan = beta_plan(record, rollouts_per_task, **plan_knobs)
    cumulative = np.cumsum(plan.weights)

    def draw() -> str:  # a cache task with probability u_j / Σ u
        return plan.cache[min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(plan.cache) - 1)]

    return replace_copies(task_ids, rollouts_per_task, plan.cache, lambda task_id: plan.replacement.get(task_id, 0.0), draw, rng)


class BetaScheduler(TaskScheduler):
    """`sampling: beta`: the epoch schedule of `TaskScheduler` with `beta_reallocate`.

    The scheduler owns its `BetaRecord`: call `observe(task_counts)` once per round, next to
    `SuccessRateRecorder.update`, with the same `counts_from_trajectories` result. `reallocate`
    keeps the shared signature; its `recorder` argument is not read.
    """

    def __init__(
        self,
        task_ids: Sequence[str],
        tasks_per_epoch: int,
        seed: int,
        rule: str = "group",
        p_low: float = 0.05,
        p_high: float = 0.6,
        min_informative: float = 0.05,
        replace_hopeless: bool = False,
        prior_a: float = 1.0,
        prior_b: float = 1.0,
        decay: float = 0.5,
    ) -> None:
        super().__init__(task_ids, tasks_per_epoch, seed)
        task_outlook(1.0, 1.0, rule, 2, p_low, p_high)  # refuse bad knobs now, not at the first round
        self.knobs = {
            "rule": rule,
            "p_low": p_low,
            "p_high": p_high,
            "min_informative": min_informative,
            "replace_hopeless": replace_hopeless,
        }
        self.record = BetaRecord(prior_a, prior_b, decay)
        beta_plan(self.record, 2, **self.knobs)  # checks min_informative

    def observe(self, results: Mapping[str, Counts]) -> None:
        """This round's (k_i, n_i) into the posterior."""
        self.record.update(results)

    def reallocate(
        self,
        task_ids: Sequence[str],
        rollouts_per_task: int,
        recorder: SuccessRateRecorder | None = None,
        generator: np.random.Generator | None = None,
    ) -> Allocation:
        """B task ids × N copies → the B·N copies (`beta_reallocate` with this scheduler's knobs)."""
        rng = self.generator if generator is None else generator
        return beta_reallocate(task_ids, rollouts_per_task, self.record, rng, **self.knobs)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "beta_record": self.record.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "beta_record" not in state:
            raise ValueError("The checkpoint has no Beta record: it was not saved with sampling=beta; resume with the sampler it used.")
        super().load_state_dict(state)
        self.record.load_state_dict(state["beta_record"])


# --------------------------------------------------------------------------------------------
# SL-GRPO with the posterior
# --------------------------------------------------------------------------------------------


def augment_probability(a: float, b: float, group_size: int, rule: str = "group", s_low: float = 0.2) -> float:
    """How likely the task is hard enough for SL-GRPO: P(k ≤ 1 of N) ("group") or P(p ≤ s_low) ("interval")."""
    if rule == "group":
        return at_most_one_success(a, b, group_size)
    if rule == "interval":
        return beta_cdf(s_low, a, b)
    raise ValueError(f"algo.beta_rule={rule!r}: use one of {', '.join(RULES)}.")


def beta_low_success_rule(
    record: BetaRecord, group_size: int, q: float = 0.5, rule: str = "group", s_low: float = 0.2
) -> Callable[[str], bool]:
    """`algo.aug_select=beta`: the "this task is hard" predicate for `augment.select_augmentation_steps`,
    with the posterior in place of ŝ_i ≤ s_low: a known task whose `augment_probability` is ≥ q.
    A task the record has never seen is not hard (as with the fixed rule). Pass the record after
    this round's update unless algo.slgrpo_record=before."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"algo.beta_aug_q={q} must be in (0, 1].")
    augment_probability(1.0, 1.0, max(group_size, 1), rule, s_low)  # refuse a bad rule now
    decided: dict[str, bool] = {}

    def is_low(task_id: str) -> bool:
        if not record.known(task_id):
            return False
        if task_id not in decided:
            a, b = record.posterior(task_id)
            decided[task_id] = augment_probability(a, b, group_size, rule, s_low) >= q
        return decided[task_id]

    return is_low
