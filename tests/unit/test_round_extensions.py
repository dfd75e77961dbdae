"""The three extensions (docs/extensions.md) in one real round each: CounterEnv, a scripted policy,
numbers by hand. Tasks A, B, C have goals 1, 2, 3 (tests/unit/test_round.py)."""

from __future__ import annotations

import math

import pytest

from steprl.algo.adaptive_thresholds import BetaScheduler
from steprl.envs import make, register
from steprl.errors import CheckpointError
from steprl.rollout import InProcessPool, RolloutCollector
from steprl.rollout.replay import continuation_state
from tests.doubles import FINISH, UP, CounterEnv, counter_goal, counter_value
from tests.doubles import ScriptedTokenPolicy
from tests.unit.test_round import A, B, C, runner_with_prior

PRIOR = {A: 0.9, B: 0.1, C: 0.5}


class StopsShortPolicy(ScriptedTokenPolicy):
    """As ScriptedTokenPolicy, but on C (goal 3) it presses up twice and then gives up at 2: every
    C rollout visits counter=0, 1, 2 and fails with finished()."""

    def respond(self, dialogue, temperature):
        if temperature is None and counter_goal(dialogue) == 3:
            return f"Thought: up.\n{UP}" if counter_value(dialogue) < 2 else f"Thought: enough.\n{FINISH}"
        return super().respond(dialogue, temperature)


class SnapshotCounterEnv(CounterEnv):
    """CounterEnv that can snapshot and restore (the counter, step count and finished flag), as MiniDesk can."""

    supports_snapshot = True

    def snapshot(self):
        return (self._task, self._value, self._steps, self._finished)

    def restore(self, state):
        self._task, self._value, self._steps, self._finished = state


def snapshot_runner(**algo):
    """`runner_with_prior` on SnapshotCounterEnv."""
    register("counter_snapshot", SnapshotCounterEnv)
    runner = runner_with_prior(PRIOR, **algo)
    runner.collector.close()
    runner.collector = RolloutCollector(InProcessPool("counter_snapshot", {"num_tasks": 3, "max_steps": 6}, num_workers=2))
    return runner


def run_round(runner, policy, epoch: int = 0):
    try:
        return runner.run(epoch, policy)
    finally:
        runner.collector.close()


# ------------------------------------------------------------------------------ 1. failed-trajectory credit


def test_failed_credit_gives_failed_steps_the_change_in_promise():
    """Past rounds (loaded record): C was solved 2 of 4 times, both through counter=1 and 2.
    This round: 4 failures visiting 0, 1, 2 and finishing at 2. For one of them (leave-one-out):
    N = 4 + 4 − 1 = 7, p = 2/7; v(0) = (2 + 2·2/7)/(7 + 2) = 2/7; v(1) = v(2) = (2 + 4/7)/(5 + 2) = 18/49.
    A_0 = 0.5·(18/49 − 2/7) = 2/49; A_1 = 0.5·(18/49 − 18/49) = 0 (no sample); A_2 = 0.5·(0 − 18/49) = −9/49
    (finished() in a failed trajectory leads to v = 0)."""
    runner = runner_with_prior(PRIOR, sampling="uniform", augment=False, failed_credit=True)
    runner.state_record.load_state_dict(
        {"totals": {C: [2, 4]}, "states": {C: {"counter=0": [2, 4], "counter=1": [2, 2], "counter=2": [2, 2], "counter=3": [2, 2]}}}
    )
    round_ = run_round(runner, StopsShortPolicy())
    c_samples = sorted(round(s.advantage, 9) for s in round_.samples if s.task_id == C)
    assert c_samples == pytest.approx([-9 / 49] * 4 + [2 / 49] * 4)
    assert round_.report.failed_credit_samples == 8
    assert {o.turn_index for s, o in zip(round_.samples, round_.origins) if s.task_id == C} == {0, 2}
    # Successes keep SR-Adv (1 − ŝ before): A 0.1, B 0.9.
    assert {round(s.advantage, 6) for s in round_.samples if s.task_id == A} == {0.1}
    assert {round(s.advantage, 6) for s in round_.samples if s.task_id == B} == {0.9}
    # The record now holds this round too (decay 1): counter=1 of C: k = 2, n = 2 + 4.
    assert runner.state_record.state_counts(C, "counter=1") == (2.0, 6.0)
    assert runner.state_record.task_counts(C) == (2.0, 8.0)
    assert runner.state_record.state_counts(B, "counter=2") == (4.0, 4.0)
    assert "state_record" in runner.state_dict()


def test_failed_credit_off_is_the_paper():
    round_ = run_round(runner_with_prior(PRIOR, sampling="uniform", augment=False), StopsShortPolicy())
    assert [s for s in round_.samples if s.task_id == C] == [] and round_.report.failed_credit_samples == 0


def test_failed_credit_record_is_checkpointed():
    runner = runner_with_prior(PRIOR, sampling="uniform", augment=False, failed_credit=True)
    run_round(runner, StopsShortPolicy())
    resumed = runner_with_prior(PRIOR, sampling="uniform", augment=False, failed_credit=True)
    resumed.load_state_dict(runner.state_dict())
    resumed.collector.close()
    assert resumed.state_record.state_dict() == runner.state_record.state_dict()
    state = runner.state_dict()
    del state["state_record"]
    with pytest.raises(CheckpointError, match="state_record"):
        resumed.load_state_dict(state)


# ------------------------------------------------------------------------------ 2. outcome-judged SL-GRPO


def test_outcome_keeps_an_alternative_that_also_works():
    """B (goal 2) is solved up, up, finished(); the alternative at every step is press down. Continued
    with the policy to the end (budget 6), each recovers: t=0: D U U U F (5 steps), t=1: U D U U F,
    t=2: U U D U F, all succeed: every group is [1, 1] and dropped. Equivalence would push all 12 down."""
    runner = runner_with_prior(PRIOR, sampling="uniform", aug_reward="outcome")
    policy = ScriptedTokenPolicy()
    round_ = run_round(runner, policy)
    report = round_.report
    assert report.task_counts[B] == (4, 4)
    assert report.aug_samples == 0 and report.aug_outcome_groups == 0
    # Env steps of the continuations (each call resets and replays): the alternative at t leaves
    # 4 − t more calls of lengths t+1 .. 5: t=0: 1+2+3+4+5 = 15, t=1: 2+3+4+5 = 14, t=2: 3+4+5 = 12.
    assert report.aug_env_steps == 4 * (15 + 14 + 12)
    assert report.env_steps_total == report.env_steps + report.aug_env_steps
    assert (12, None) in policy.generate_calls  # the continuations sample as rollouts do (no temperature)


def test_outcome_with_a_short_horizon_judges_the_unfinished_episode():
    """H = 3 (the alternative + 2 policy steps): t=0: D U U → counter 1, not finished: 0; t=1: D U U →
    2 but not finished: 0; t=2: D U F → success: 1. Groups [1, 0] at t=0, 1 (A = ±0.5/0.7071); t=2 dropped.
    Env steps: t=0: 1+2+3, t=1: 2+3+4, t=2: 3+4+5 = 6 + 9 + 12 = 27 per trajectory."""
    runner = runner_with_prior(PRIOR, sampling="uniform", aug_reward="outcome", aug_outcome_horizon=3)
    round_ = run_round(runner, ScriptedTokenPolicy())
    augmented = [(s, o) for s, o in zip(round_.samples, round_.origins) if s.source == "augment"]
    assert round_.report.aug_outcome_groups == 8 and len(augmented) == 16
    assert {o.turn_index for _, o in augmented} == {0, 1}
    assert sorted(round(s.advantage, 5) for s, _ in augmented) == pytest.approx(
        [-0.5 / math.sqrt(0.5)] * 8 + [0.5 / math.sqrt(0.5)] * 8, rel=1e-5
    )
    assert round_.report.aug_env_steps == 4 * 27


def test_outcome_rescoring_the_original():
    """With rescore_original the original a_t is continued too, with the same horizon 3: t=0 (up): U U F
    → success; t=1 (up): U U F → success; t=2 (finished): success. So r_0 = 1 as before and the same 8
    groups are kept; the env steps add the originals': t=0: 1+2+3, t=1: 2+3, t=2: 3 → 14 per trajectory."""
    runner = runner_with_prior(PRIOR, sampling="uniform", aug_reward="outcome", aug_outcome_horizon=3, aug_outcome_rescore_original=True)
    round_ = run_round(runner, ScriptedTokenPolicy())
    assert round_.report.aug_outcome_groups == 8
    assert round_.report.aug_env_steps == 4 * (27 + 14)


def test_outcome_with_snapshots_steps_once_per_call():
    """Where the env snapshots, each call after the first restores the previous state and takes one
    step: H = 3 gives the same groups as the replay above, for t=0: 1+1+1, t=1: 2+1+1, t=2: 3+1+1
    = 12 env steps per trajectory instead of 27."""
    runner = snapshot_runner(sampling="uniform", aug_reward="outcome", aug_outcome_horizon=3)
    round_ = run_round(runner, ScriptedTokenPolicy())
    assert round_.report.aug_outcome_groups == 8 and round_.report.aug_samples == 16
    assert round_.report.aug_env_steps == 4 * 12


def test_continuation_state_replays_or_resumes_by_hand():
    env = SnapshotCounterEnv(max_steps=6)
    task = make("counter", num_tasks=3).tasks("train")[1]  # goal 2
    down = "Action: press(key='down')"
    first = continuation_state(env, task, [UP, down], limit=4)  # reset, up, down: counter 0
    assert (first.done, first.env_steps, first.observation.state_hash) == (False, 2, "counter=0")
    second = continuation_state(SnapshotCounterEnv(max_steps=6), task, [UP, down, UP], 4, first.resume)  # another worker
    assert (second.done, second.env_steps, second.observation.state_hash) == (False, 1, "counter=1")
    last = continuation_state(env, task, [UP, down, UP, UP], 4, second.resume)  # the limit: evaluated unfinished
    assert (last.done, last.score, last.env_steps) == (True, 0.0, 1)
    finished = continuation_state(CounterEnv(max_steps=6), task, [UP, UP, FINISH], limit=10)  # no snapshots: replay
    assert (finished.done, finished.score, finished.env_steps, finished.resume) == (True, 1.0, 3, None)
    plain = continuation_state(CounterEnv(max_steps=6), task, [UP], limit=10)
    assert plain.resume is None and not plain.done


# ------------------------------------------------------------------------------ 3. Beta-posterior thresholds


def test_beta_sampling_and_selection_in_a_round():
    """Loaded posterior (N = 4): A solved 400/400 → m = E[p^4] ≈ 0.99, u < 0.05: not in the cache, its
    copies go away; C failed 0/400 → h ≈ 0.99, u < 0.05, m ≈ 0: kept, not in the cache; B 1/8 = Beta(2, 8),
    u ≈ 0.20: the only cache task. SL-GRPO (before the update): P(k ≤ 1 of 4 | Beta(2, 8)) =
    E[(1−p)^4] + 4·(2/10)·E[(1−p)^3 | Beta(3, 8)] = 0.4615 + 0.3357 = 0.797 ≥ 0.5 → B is augmented,
    although ŝ_B = 0.1 > s_low = 0.05 (the fixed rule would not)."""
    runner = runner_with_prior(PRIOR, sampling="beta", aug_select="beta", slgrpo_record="before", s_low=0.05)
    assert isinstance(runner.scheduler, BetaScheduler) and runner.beta_record is runner.scheduler.record
    runner.beta_record.load_state_dict({"counts": {A: [400, 400], B: [1, 8], C: [0, 400]}})
    round_ = run_round(runner, ScriptedTokenPolicy())
    report = round_.report
    counts = {task: report.task_counts.get(task, (0, 0)) for task in (A, B, C)}
    assert report.cache_size == 1 and counts[C] == (0, 4)
    assert counts[A][1] + report.replaced_copies == 4 and counts[B] == (4 + report.replaced_copies,) * 2
    assert report.replaced_copies >= 2  # each of A's 4 copies leaves with p ≈ 0.99
    # The posterior after (decay 0.5): B = (0.5 + n_B, 4 + n_B).
    assert runner.beta_record.counts(B) == pytest.approx((0.5 + counts[B][1], 4 + counts[B][1]))
    assert runner.beta_record.counts(C) == pytest.approx((0.0, 204.0))
    assert {s.task_id for s in round_.samples if s.source == "augment"} == {B}
    assert report.aug_samples == 2 * 3 * counts[B][1]
    assert "beta_record" in runner.state_dict()["scheduler"]


def test_beta_selection_with_the_paper_sampler_keeps_its_own_record():
    runner = runner_with_prior(PRIOR, sampling="uniform", aug_select="beta", slgrpo_record="before", s_low=0.05)
    assert runner.beta_record is not None and not isinstance(runner.scheduler, BetaScheduler)
    runner.beta_record.load_state_dict({"counts": {B: [1, 8]}})
    round_ = run_round(runner, ScriptedTokenPolicy())
    assert {s.task_id for s in round_.samples if s.source == "augment"} == {B}
    state = runner.state_dict()
    assert state["beta_record"]["counts"][B] == pytest.approx([4.5, 8.0])  # 0.5·(1, 8) + (4, 4)
    fixed = run_round(runner_with_prior(PRIOR, sampling="uniform", slgrpo_record="before", s_low=0.05), ScriptedTokenPolicy())
    assert fixed.report.aug_samples == 0  # the paper's rule: ŝ_B = 0.1 > 0.05


def test_minidesk_continuations_resume_from_snapshots_as_a_replay_would():
    """The real MiniDesk env: following the expert, each call resumed from the previous call's snapshot
    on another env instance lands in the state a reset and full replay reaches, one env step per call."""
    worker_a, worker_b, replayer = make("minidesk"), make("minidesk"), make("minidesk")
    task = worker_a.tasks("train")[0]
    worker_a.reset(task)
    responses, state = [worker_a.expert_response()], None
    for call in range(6):
        worker = (worker_a, worker_b)[call % 2]
        state_now = continuation_state(worker, task, responses, limit=20, resume=state)
        replayed = continuation_state(replayer, task, responses, limit=20)
        assert state_now.env_steps == (len(responses) if state is None else 1)
        if state_now.done:
            assert replayed.done and state_now.score == replayed.score == 1.0  # the expert solves it
            break
        assert state_now.observation.state_hash == replayed.observation.state_hash
        worker_a.restore(state_now.resume)
        responses.append(worker_a.expert_response())
        state = state_now.resume
    else:
        pytest.fail("the expert did not finish the task in 6 steps")
