"""Extension 3: thresholds that set themselves, from a Beta posterior per task (docs/extensions.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from steprl.algo.adaptive_thresholds import (
    BetaRecord,
    BetaScheduler,
    at_most_one_success,
    augment_probability,
    beta_cdf,
    beta_low_success_rule,
    beta_plan,
    beta_power_mean,
    beta_reallocate,
    task_outlook,
)
from steprl.algo.sampling import SRTrajScheduler, replacement_probability
from steprl.algo.success_rate import SuccessRateRecorder
from steprl.types import Dialogue, DialogueTurn, TrainingSample


class ScriptedRng:
    """A generator whose random() returns the given numbers in order, and fails when asked for more."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        assert self.values, "the rule drew more random numbers than the test planned"
        return self.values.pop(0)


# ------------------------------------------------------------------------------ the Beta distribution


@pytest.mark.parametrize("x", [0.01, 0.2, 0.5, 0.77, 0.99])
def test_beta_cdf_closed_forms(x):
    assert beta_cdf(x, 1, 1) == pytest.approx(x, abs=1e-12)  # uniform
    assert beta_cdf(x, 3, 1) == pytest.approx(x**3, abs=1e-12)  # I_x(a, 1) = x^a
    assert beta_cdf(x, 1, 4) == pytest.approx(1 - (1 - x) ** 4, abs=1e-12)  # I_x(1, b) = 1 − (1 − x)^b
    assert beta_cdf(x, 0.5, 0.5) == pytest.approx(2 / math.pi * math.asin(math.sqrt(x)), abs=1e-10)  # arcsine law


def test_beta_cdf_integer_parameters_are_binomial_tails():
    # I_x(a, b) = P(Binomial(a + b − 1, x) ≥ a). I_0.3(2, 3): n = 4,
    # C(4,2)·0.09·0.49 + C(4,3)·0.027·0.7 + 0.0081 = 0.2646 + 0.0756 + 0.0081 = 0.3483
    assert beta_cdf(0.3, 2, 3) == pytest.approx(0.3483, abs=1e-12)
    for a, b, x in [(5, 7, 0.4), (12, 3, 0.85), (30, 40, 0.45), (2, 50, 0.01)]:
        n = a + b - 1
        tail = sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))
        assert beta_cdf(x, a, b) == pytest.approx(tail, rel=1e-10, abs=1e-14)


def test_beta_cdf_matches_numerical_integration_for_fractional_parameters():
    a, b = 2.5, 3.7
    grid = np.linspace(0.0, 0.42, 200_001)
    density = grid ** (a - 1) * (1 - grid) ** (b - 1) * math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    integral = float(np.sum((density[1:] + density[:-1]) / 2 * np.diff(grid)))
    assert beta_cdf(0.42, a, b) == pytest.approx(integral, rel=1e-8)
    assert beta_cdf(0.42, a, b) + beta_cdf(0.58, b, a) == pytest.approx(1.0, abs=1e-12)


def test_beta_cdf_edges_and_errors():
    assert beta_cdf(0.0, 2, 2) == 0.0 and beta_cdf(1.0, 2, 2) == 1.0 and beta_cdf(-1, 2, 2) == 0.0
    assert beta_cdf(0.5, 7.3, 7.3) == pytest.approx(0.5, abs=1e-12)  # symmetric
    with pytest.raises(ValueError, match="must be > 0"):
        beta_cdf(0.5, 0, 1)


def test_beta_power_mean_by_hand():
    # E[p^4], Beta(2, 2): (2·3·4·5) / (4·5·6·7) = 120 / 840 = 1/7; Beta(3, 1): 360 / 840 = 3/7;
    # Beta(1, 3): (1·2·3·4) / (4·5·6·7) = 24 / 840 = 1/35; n = 0: 1
    assert beta_power_mean(2, 2, 4) == pytest.approx(1 / 7)
    assert beta_power_mean(3, 1, 4) == pytest.approx(3 / 7)
    assert beta_power_mean(1, 3, 4) == pytest.approx(1 / 35)
    assert beta_power_mean(1, 3, 0) == 1.0


def test_group_outlook_by_hand():
    # N = 4. Unseen, Beta(1, 1): m = h = 1/5, u = 3/5. One of two, Beta(2, 2): m = h = 1/7, u = 5/7.
    # Two of two, Beta(3, 1): m = 3/7, h = 1/35, u = 1 − 15/35 − 1/35 = 19/35.
    for (a, b), (m, u, h) in {(1, 1): (1 / 5, 3 / 5, 1 / 5), (2, 2): (1 / 7, 5 / 7, 1 / 7), (3, 1): (3 / 7, 19 / 35, 1 / 35)}.items():
        outlook = task_outlook(a, b, "group", 4)
        assert (outlook.mastered, outlook.informative, outlook.hopeless) == pytest.approx((m, u, h))
    single = task_outlook(2, 2, "group", 1)  # one rollout is never mixed: m = h = 1/2
    assert (single.mastered, single.informative, single.hopeless) == pytest.approx((0.5, 0.0, 0.5))


def test_interval_outlook_by_hand():
    # Beta(1, 1): I_x = x: m = 1 − 0.6 = 0.4, u = 0.6 − 0.05 = 0.55, h = 0.05.
    # Beta(2, 1): I_x = x²: m = 1 − 0.36 = 0.64, u = 0.36 − 0.0025 = 0.3575, h = 0.0025.
    for (a, b), expected in {(1, 1): (0.4, 0.55, 0.05), (2, 1): (0.64, 0.3575, 0.0025)}.items():
        outlook = task_outlook(a, b, "interval", p_low=0.05, p_high=0.6)
        assert (outlook.mastered, outlook.informative, outlook.hopeless) == pytest.approx(expected)
    with pytest.raises(ValueError, match="beta_p_low"):
        task_outlook(1, 1, "interval", p_low=0.7, p_high=0.6)
    with pytest.raises(ValueError, match="beta_rule"):
        task_outlook(1, 1, "thompson")


def test_at_most_one_success_by_hand():
    # Beta(2, 8) (1 success in 8, uniform prior), N = 8:
    # P(0) = Π_{j<8} (8 + j)/(10 + j) = (8·9)/(16·17) = 9/34
    # P(1) = 8 · 2/10 · Π_{j<7} (8 + j)/(11 + j) = 1.6 · (8·9·10)/(15·16·17) = 24/85
    # sum = 45/170 + 48/170 = 93/170 ≈ 0.547
    assert at_most_one_success(2, 8, 8) == pytest.approx(93 / 170)
    # against a direct beta-binomial sum: P(k) = C(N, k)·B(a + k, b + N − k)/B(a, b)
    def log_beta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    a, b, n = 3.5, 2.25, 6
    direct = sum(math.comb(n, k) * math.exp(log_beta(a + k, b + n - k) - log_beta(a, b)) for k in (0, 1))
    assert at_most_one_success(a, b, n) == pytest.approx(direct, rel=1e-12)


# ------------------------------------------------------------------------------ the record


def test_record_posterior_and_decay_by_hand():
    record = BetaRecord(prior_a=1, prior_b=1, decay=0.5)
    assert record.posterior("new") == (1.0, 1.0) and record.counts("new") is None and not record.known("new")
    record.update({"t": (2, 2), "crashed": (0, 0)})
    assert record.posterior("t") == (3.0, 1.0) and not record.known("crashed")
    # next round: (2, 2)·0.5 = (1, 1), + (0, 2) → (1, 3); posterior (1 + 1, 1 + 3 − 1) = (2, 3), mean 0.4
    record.update({"t": (0, 2)})
    assert record.counts("t") == (1.0, 3.0) and record.posterior("t") == (2.0, 3.0)
    assert record.mean("t") == pytest.approx(0.4)
    cumulative = BetaRecord(decay=1.0)
    cumulative.update({"t": (2, 2)})
    cumulative.update({"t": (0, 2)})
    assert cumulative.counts("t") == (2.0, 4.0)


def test_record_state_dict_round_trip_and_errors():
    record = BetaRecord(decay=0.5)
    record.update({"a": (1, 3), "b": (4, 4)})
    record.update({"a": (2, 3)})
    restored = BetaRecord(decay=0.5)
    restored.load_state_dict(json.loads(json.dumps(record.state_dict())))  # plain types
    assert restored.state_dict() == record.state_dict() and restored.posterior("a") == record.posterior("a")
    with pytest.raises(ValueError, match="counts"):
        restored.load_state_dict({"rates": {}})
    with pytest.raises(ValueError, match="0 <= k <= n"):
        record.update({"a": (3, 2)})
    with pytest.raises(ValueError, match="beta_decay"):
        BetaRecord(decay=0)
    with pytest.raises(ValueError, match="beta_prior"):
        BetaRecord(prior_a=0)


# ------------------------------------------------------------------------------ SR-Traj with the posterior


def three_task_record() -> BetaRecord:
    record = BetaRecord(decay=0.5)
    record.update({"easy": (3, 3), "mid": (1, 2), "hard": (0, 3)})
    return record


def test_beta_plan_by_hand():
    # N = 4. easy Beta(4, 1): m = (4·5·6·7)/(5·6·7·8) = 1/2, h = (1·2·3·4)/(5·6·7·8) = 1/70, u = 34/70 = 17/35
    # mid Beta(2, 2): m = h = 1/7, u = 5/7 = 25/35.  hard Beta(1, 4): m = 1/70, h = 1/2, u = 17/35
    # cache sorted: easy, hard, mid; weights 17 : 17 : 25 over 59
    plan = beta_plan(three_task_record(), group_size=4)
    assert plan.replacement == pytest.approx({"easy": 1 / 2, "hard": 1 / 70, "mid": 1 / 7})
    assert plan.cache == ["easy", "hard", "mid"]
    assert plan.weights == pytest.approx([17 / 59, 17 / 59, 25 / 59])
    # replace_hopeless adds h: easy 1/2 + 1/70 = 36/70, hard 1/70 + 1/2 = 36/70, mid 2/7
    hopeless = beta_plan(three_task_record(), group_size=4, replace_hopeless=True)
    assert hopeless.replacement == pytest.approx({"easy": 36 / 70, "hard": 36 / 70, "mid": 2 / 7})
    # u_min = 0.6 keeps only mid (5/7 ≈ 0.714)
    assert beta_plan(three_task_record(), 4, min_informative=0.6).cache == ["mid"]


def test_beta_reallocate_by_hand():
    # schedule [easy, new], N = 2. easy: p_rep 1/2. copy 1: 0.4 < 0.5 → replaced; pick 0.5 in the
    # cumulative weights [17/59 = 0.288, 34/59 = 0.576, 1] → index 1 = "hard". copy 2: 0.7 → kept.
    # "new" is unseen: never replaced, no random number drawn.
    allocation = beta_reallocate(["easy", "new"], 2, three_task_record(), ScriptedRng(0.4, 0.5, 0.7))
    assert allocation.copies == ["hard", "easy", "new", "new"]
    assert allocation.replaced == [("easy", "hard")] and allocation.cache_size == 3


def test_no_data_and_all_successes_replace_nothing():
    # No data: empty record, empty cache, nothing replaced and no random number drawn.
    empty = beta_reallocate(["a", "b"], 3, BetaRecord(), ScriptedRng())
    assert empty.copies == ["a"] * 3 + ["b"] * 3 and empty.cache_size == 0
    # All successes, many of them: Beta(101, 1), N = 4: m = 101/105 ≈ 0.962, u ≈ 0.038 < 0.05: no cache
    solved = BetaRecord(decay=1.0)
    solved.update({"a": (100, 100), "b": (100, 100)})
    allocation = beta_reallocate(["a", "b"], 4, solved, ScriptedRng())
    assert allocation.cache_size == 0 and allocation.num_replaced == 0
    # All failures: Beta(1, 101): hopeless, not replaced by default (like SR-Traj's unsolved tasks)
    failed = BetaRecord(decay=1.0)
    failed.update({"a": (0, 100)})
    # m = E[p^4] = (1·2·3·4)/(102·103·104·105) = 24/114725520; u ≈ 1 − 101/105 ≈ 0.038 < 0.05: no cache
    assert beta_plan(failed, 4).replacement["a"] == pytest.approx(24 / 114725520)
    assert beta_plan(failed, 4).cache == []


def test_replacement_rate_matches_p_rep():
    # done: Beta(21, 1), N = 8: m = Π_{j<8} (21 + j)/(22 + j) = 21/29 ≈ 0.724; mid is the cache.
    record = BetaRecord(decay=1.0)
    record.update({"done": (20, 20), "mid": (5, 10)})
    # The cache holds both: done u = 1 − 21/29 − h (h = 8!/(22·…·29) ≈ 1.4e-7) ≈ 0.27586;
    # mid Beta(6, 6): m = h = (6·7·8·9·10·11)/(14·15·16·17·18·19) = 332640/19535040 = 0.017028, u = 0.965945.
    # A replaced copy goes to mid with probability 0.965945 / (0.965945 + 0.275862) = 0.7779.
    allocation = beta_reallocate(["done"] * 1000, 8, record, np.random.default_rng(0))
    assert allocation.num_replaced / 8000 == pytest.approx(21 / 29, abs=0.03)
    to_mid = sum(target == "mid" for _, target in allocation.replaced) / allocation.num_replaced
    assert to_mid == pytest.approx(0.7779, abs=0.03)
    assert beta_plan(record, 8).weights == pytest.approx([0.275862 / 1.241807, 0.965945 / 1.241807], rel=1e-5)


def test_a_task_solved_once_is_not_treated_as_mastered():
    # The point of the posterior: ŝ = 1/1 = 1 makes SR-Traj hand its copies away with p_rep(1) ≈ 0.98;
    # Beta(2, 1) with N = 8 gives m = E[p^8] = 2/10 = 0.2.
    record = BetaRecord()
    record.update({"lucky": (1, 1)})
    assert beta_plan(record, 8).replacement["lucky"] == pytest.approx(0.2)
    recorder = SuccessRateRecorder()
    recorder.update({"lucky": (1, 1)})
    # SR-Traj: p_rep(1) = 1/(1 + e^{−10·(1 − 0.6)}) = 1/(1 + e^{−4}) = 0.98201379
    assert replacement_probability(recorder.get("lucky"), s0=0.6, kappa=10.0) == pytest.approx(0.98201379)


def test_beta_scheduler_plugs_in_and_checkpoints():
    scheduler = BetaScheduler(["easy", "mid", "hard", "new"], tasks_per_epoch=2, seed=3)
    scheduler.observe({"easy": (3, 3), "mid": (1, 2), "hard": (0, 3)})
    assert scheduler.record.posterior("easy") == (4.0, 1.0)
    first = scheduler.reallocate(["easy", "mid"], 4, SuccessRateRecorder())
    assert len(first.copies) == 8 and first.cache_size == 3
    state = json.loads(json.dumps(scheduler.state_dict()))
    resumed = BetaScheduler(["easy", "mid", "hard", "new"], tasks_per_epoch=2, seed=3)
    resumed.load_state_dict(state)
    assert resumed.record.posterior("easy") == (4.0, 1.0)
    # same generator state: the same allocation after resuming
    again = scheduler.reallocate(["easy", "easy"], 4, SuccessRateRecorder())
    assert resumed.reallocate(["easy", "easy"], 4, SuccessRateRecorder()).copies == again.copies
    plain = SRTrajScheduler(["easy", "mid", "hard", "new"], 2, 3).state_dict()
    with pytest.raises(ValueError, match="sampling=beta"):
        resumed.load_state_dict(json.loads(json.dumps(plain)))
    with pytest.raises(ValueError, match="beta_rule"):
        BetaScheduler(["a"], 1, 0, rule="bandit")
    with pytest.raises(ValueError, match="beta_min_informative"):
        BetaScheduler(["a"], 1, 0, min_informative=1.5)


# ------------------------------------------------------------------------------ SL-GRPO with the posterior


def step(task_id: str, advantage: float = 0.8, source: str = "step") -> TrainingSample:
    dialogue = Dialogue("x", [DialogueTurn(np.zeros((2, 2, 3), np.uint8), "click()", trainable=True)])
    return TrainingSample(dialogue, advantage, task_id, source=source)


def test_augment_probability_by_hand():
    # group: Beta(2, 8), N = 8 → 93/170 (above). interval: I_0.2(2, 8) = P(Bin(9, 0.2) ≥ 2)
    #   = 1 − 0.8^9 − 9·0.2·0.8^8 = 1 − 0.1342177 − 0.3019899 = 0.5637924
    assert augment_probability(2, 8, 8, "group") == pytest.approx(93 / 170)
    assert augment_probability(2, 8, 8, "interval", s_low=0.2) == pytest.approx(0.5637924, rel=1e-6)


def test_beta_low_success_rule():
    record = BetaRecord()
    record.update({"hard": (1, 8), "easy": (6, 8)})
    # hard: Beta(2, 8): P(k ≤ 1 of 8) = 93/170 ≈ 0.547 ≥ 0.5: yes. easy: Beta(7, 3): P(k ≤ 1) is tiny: no.
    is_low = beta_low_success_rule(record, 8)
    assert [is_low(t) for t in ("hard", "easy", "new")] == [True, False, False]  # an unseen task is not hard
    assert not beta_low_success_rule(record, 8, q=0.6)("hard")  # 0.547 < 0.6
    assert not beta_low_success_rule(BetaRecord(), 8)("hard")  # no data
    assert beta_low_success_rule(record, 8, rule="interval", s_low=0.2)("hard")  # I_0.2(2, 8) = 0.564
    with pytest.raises(ValueError, match="beta_aug_q"):
        beta_low_success_rule(record, 8, q=0.0)
    with pytest.raises(ValueError, match="beta_rule"):
        beta_low_success_rule(record, 8, rule="median")


def test_beta_rule_plugs_into_the_slgrpo_selector():
    """The predicate replaces ŝ_i ≤ s_low in `select_augmentation_steps`, which keeps its own filters
    (step samples of successful trajectories, parsed valid actions)."""
    from steprl.algo.augment import select_augmentation_steps
    from steprl.algo.samples import SampleOrigin
    from steprl.types import Action, Observation, Task, Trajectory, Turn

    def origin(task_id: str, score: float) -> SampleOrigin:
        turn = Turn(Observation(np.zeros((2, 2, 3), np.uint8), "x"), "click()", action=Action("click", point=(1, 1)))
        return SampleOrigin(Trajectory(Task(task_id, "f", "x"), [turn], score=score, success=score >= 1.0), 0)

    record = BetaRecord()
    record.update({"hard": (1, 8), "easy": (6, 8)})
    pairs = [(step("hard"), origin("hard", 1.0)), (step("easy"), origin("easy", 1.0)), (step("hard"), origin("hard", 0.0))]
    assert select_augmentation_steps(pairs, beta_low_success_rule(record, 8), 1.0) == [pairs[0]]
