"""RolloutCollector on the in-process pool (and worker threads): records, batching, history
window, determinism, retries, quarantine and the guards. CounterEnv and the fake policies come
from tests/doubles.py."""

from __future__ import annotations

import time

import numpy as np
import pytest

from steprl.envs import register
from steprl.rollout import CollectStats, InProcessPool, LocalPool, RolloutCollector, RolloutError, copy_indices
from tests.doubles import (
    COUNTER_ENV,
    DOWN,
    FINISH,
    UP,
    CounterEnv,
    CounterExpert,
    RandomPolicy,
    ScriptedPolicy,
)
from steprl.types import Task


@pytest.fixture(autouse=True)
def counter_env() -> None:
    register("counter", COUNTER_ENV)


def goal_tasks(*goals: int) -> list[Task]:
    return [
        Task(id=f"g{goal}", family="counter", instruction=f"Set the counter to {goal}, then finish.", config={"goal": goal})
        for goal in goals
    ]


def test_copy_indices_count_earlier_copies_of_the_same_task() -> None:
    a, b = goal_tasks(1, 2)
    # a b a a b -> a is copy 0, 1, 2 and b copy 0, 1 of its task
    assert copy_indices([a, b, a, a, b]) == [0, 0, 1, 2, 1]


def test_expert_trajectories_are_complete_and_in_input_order() -> None:
    tasks = goal_tasks(3, 1, 2, 1)
    with RolloutCollector(InProcessPool("counter", num_workers=2)) as collector:
        trajectories = collector.collect(tasks, CounterExpert())
    assert [t.task.id for t in trajectories] == ["g3", "g1", "g2", "g1"]
    assert [t.copy_index for t in trajectories] == [0, 0, 0, 1]
    # goal g takes g presses of "up" and one finished(): length g + 1, score 1
    assert [t.length for t in trajectories] == [4, 2, 3, 2]
    assert all(t.success and t.score == 1.0 and t.valid and t.attempts == 1 for t in trajectories)
    first = trajectories[0]
    assert [turn.action.type for turn in first.turns] == ["press", "press", "press", "finished"]
    assert [int(turn.observation.screenshot[0, 0, 0]) for turn in first.turns] == [0, 1, 2, 3]
    assert int(first.final_observation.screenshot[0, 0, 0]) == 3
    turn = first.turns[0]
    assert turn.response.endswith(UP) and turn.action_valid and turn.error is None
    assert turn.response_ids == tuple(turn.response.encode())
    assert len(turn.response_logprobs) == len(turn.response_ids)
    assert turn.env_time_s >= 0.0 and turn.generate_time_s >= 0.0


def test_invalid_actions_and_failures_are_recorded() -> None:
    policy = ScriptedPolicy(lambda d: "Action: jump()" if len(d.turns) == 1 else FINISH)
    with RolloutCollector(InProcessPool("counter")) as collector:
        (trajectory,) = collector.collect(goal_tasks(1), policy)
    # step 1 unparseable (costs a turn), step 2 finishes at counter 0 != goal 1
    assert trajectory.length == 2 and trajectory.invalid_actions == 1
    assert trajectory.turns[0].action is None and "could not parse" in trajectory.turns[0].error
    assert trajectory.valid and not trajectory.success and trajectory.score == 0.0


def test_each_generate_call_batches_every_waiting_env() -> None:
    # In-process ops finish at once, so each round every env is waiting. Goals 1..4 take 2, 3, 4, 5
    # steps: rounds have 4, 4, 3, 2, 1 envs waiting -> 5 calls for 14 steps.
    policy = CounterExpert()
    with RolloutCollector(InProcessPool("counter", num_workers=4)) as collector:
        collector.collect(goal_tasks(1, 2, 3, 4), policy)
        stats = collector.last_stats
    assert policy.batch_sizes == [4, 4, 3, 2, 1]
    assert stats.generate_calls == 5 and stats.generated == 14 and stats.env_steps == 14
    assert stats.mean_batch_size == pytest.approx(14 / 5)
    assert stats.max_batch_size == 4 and stats.trajectories == 4 and stats.env_errors == 0


def test_collect_stats_derived_figures() -> None:
    stats = CollectStats(env_steps=30, generate_calls=4, generated=30, wall_time_s=2.0, generate_time_s=0.5)
    # 30 responses in 4 calls -> 7.5 per call; 30 steps in 2 s -> 15 steps/s; 2.0 - 0.5 = 1.5 s waiting
    assert stats.mean_batch_size == 7.5
    assert stats.env_steps_per_s == 15.0
    assert stats.env_wait_s == 1.5
    assert CollectStats().mean_batch_size == 0.0 and CollectStats().env_steps_per_s == 0.0


def test_max_batch_caps_each_generate_call() -> None:
    policy = CounterExpert()
    with RolloutCollector(InProcessPool("counter", num_workers=4), max_batch=3) as collector:
        collector.collect(goal_tasks(1, 2, 3, 4), policy)
    # 4 waiting, cap 3: the longest-waiting 3 go first; every step is still answered exactly once
    assert policy.batch_sizes[0] == 3
    assert max(policy.batch_sizes) == 3 and sum(policy.batch_sizes) == 14


def test_history_window_holds_last_k_responses_and_m_screenshots() -> None:
    seen = []

    def script(dialogue):
        seen.append(dialogue)
        return UP if len(seen) < 5 else FINISH

    with RolloutCollector(InProcessPool("counter"), history_responses=2, history_screenshots=1) as collector:
        collector.collect(goal_tasks(4), ScriptedPolicy(script))
    # step t (0-based) sees min(t, 2) previous responses; the newest of them with its screenshot
    assert [len(d.turns) for d in seen] == [1, 2, 3, 3, 3]
    last = seen[4]
    assert [t.screenshot is None for t in last.turns] == [True, False, False]
    assert int(last.turns[1].screenshot[0, 0, 0]) == 3  # the screen before the 4th response
    assert [t.response for t in last.turns[:2]] == [UP, UP] and last.turns[2].response == ""


def test_greedy_and_temperature_reach_the_policy() -> None:
    policy = CounterExpert()
    with RolloutCollector(InProcessPool("counter")) as collector:
        collector.collect(goal_tasks(1), policy, greedy=True)
    assert policy.greedy_flags == [True, True]


def test_same_seed_same_trajectories_with_the_in_process_pool() -> None:
    def run(seed: int) -> list[tuple]:
        tasks = goal_tasks(1, 2, 3, 4) * 3
        with RolloutCollector(InProcessPool("counter", {"max_steps": 6}, num_workers=3), max_batch=4) as c:
            trajectories = c.collect(tasks, RandomPolicy(seed=seed))
        return [(t.task.id, t.score, tuple(turn.response for turn in t.turns)) for t in trajectories]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_progress_reports_every_finished_trajectory() -> None:
    calls = []
    with RolloutCollector(InProcessPool("counter", num_workers=2), progress=lambda d, n: calls.append((d, n))) as c:
        c.collect(goal_tasks(1, 2, 3), CounterExpert())
    assert calls == [(1, 3), (2, 3), (3, 3)]
    per_call = []
    with RolloutCollector(InProcessPool("counter"), progress=lambda d, n: calls.append((d, n))) as c:
        c.collect(goal_tasks(1), CounterExpert(), progress=lambda d, n: per_call.append((d, n)))
    assert per_call == [(1, 1)] and len(calls) == 3  # the per-call callback replaced the default


def test_empty_schedule_returns_nothing() -> None:
    with RolloutCollector(InProcessPool("counter")) as collector:
        assert collector.collect([], CounterExpert()) == []
        assert collector.last_stats.trajectories == 0


# ---- env failures --------------------------------------------------------------------------


class FailingResets:
    """A factory whose envs raise on the first `n` resets, counted over every env it built."""

    def __init__(self, n: int):
        self.left = n
        self.envs: list[CounterEnv] = []

    def __call__(self, **kwargs) -> CounterEnv:
        env = CounterEnv(**kwargs)
        original = env.reset

        def reset(task):
            if self.left > 0:
                self.left -= 1
                raise RuntimeError("VM did not boot")
            return original(task)

        env.reset = reset  # type: ignore[method-assign]
        self.envs.append(env)
        return env


def test_a_failing_env_is_restarted_and_the_trajectory_retried() -> None:
    factory = FailingResets(2)
    register("flaky", factory)
    with RolloutCollector(InProcessPool("flaky"), max_retries=2) as collector:
        (trajectory,) = collector.collect(goal_tasks(2), CounterExpert())
        stats = collector.last_stats
    # two failed resets, two restarts, the third attempt runs the episode
    assert trajectory.valid and trajectory.success and trajectory.attempts == 3
    assert stats.retries == 2 and stats.restarts == 2 and stats.env_errors == 0
    assert len(factory.envs) == 3 and all(env.closed for env in factory.envs)


def test_retries_run_out_into_an_env_error_not_a_crash() -> None:
    register("flaky", FailingResets(3))
    with RolloutCollector(InProcessPool("flaky"), max_retries=2, max_consecutive_failures=4) as collector:
        first, second = collector.collect(goal_tasks(2, 1), CounterExpert())
        stats = collector.last_stats
    assert not first.valid and first.attempts == 3 and not first.success
    assert "VM did not boot" in first.env_error and "gave up after 3 attempts" in first.env_error
    assert second.valid and second.success  # the worker recovered: its failure count was reset
    assert stats.env_errors == 1 and stats.retries == 2 and stats.restarts == 3


def bad_task_env(**kwargs) -> CounterEnv:
    """CounterEnv whose reset raises for the task with id "bad" (a broken task config)."""
    env = CounterEnv(**kwargs)
    original = env.reset

    def reset(task):
        if task.id == "bad":
            raise RuntimeError("broken task")
        return original(task)

    env.reset = reset  # type: ignore[method-assign]
    return env


def test_a_worker_that_keeps_failing_is_quarantined() -> None:
    register("bad-task", bad_task_env)
    tasks = [Task(id="bad", family="counter", instruction="Set the counter to 1, then finish.", config={"goal": 1})]
    tasks += goal_tasks(1, 2, 1)
    with RolloutCollector(InProcessPool("bad-task", num_workers=2), max_retries=2, max_consecutive_failures=2) as c:
        trajectories = c.collect(tasks, CounterExpert())
        # "bad" fails on worker 0 (attempts 1 and 2: two in a row -> quarantined), then on worker 1
        # (attempt 3: out of retries); worker 1 had successes in between, so it stays in service.
        assert c.quarantined == {0} and c.last_stats.quarantined == 1
        assert c.pool.state(0) == "stopped"
    bad, *good = trajectories
    assert bad.attempts == 3 and "broken task" in bad.env_error
    assert all(t.valid and t.success for t in good)


def test_no_healthy_worker_left_is_one_clear_error() -> None:
    register("flaky", FailingResets(100))
    collector = RolloutCollector(InProcessPool("flaky"), max_retries=5, max_consecutive_failures=2)
    with pytest.raises(RolloutError, match="quarantined"):
        collector.collect(goal_tasks(1), CounterExpert())
    assert not collector.pool.started  # closed on the way out


def test_an_env_that_never_ends_an_episode_is_an_env_error() -> None:
    with RolloutCollector(InProcessPool("counter", {"max_steps": 1000}), max_turns=5) as collector:
        (trajectory,) = collector.collect(goal_tasks(1), ScriptedPolicy(UP))
    assert trajectory.length == 5 and "max_turns=5" in trajectory.env_error and trajectory.attempts == 1


def test_the_task_step_budget_ends_the_episode() -> None:
    task = Task(id="t", family="counter", instruction="Set the counter to 9, then finish.", config={"goal": 9}, max_steps=3)
    with RolloutCollector(InProcessPool("counter")) as collector:
        (trajectory,) = collector.collect([task], ScriptedPolicy(DOWN))
    assert trajectory.length == 3 and trajectory.valid and trajectory.score == 0.0


def test_a_hung_thread_worker_times_out_and_the_trajectory_is_retried() -> None:
    # The first step of the first env sleeps 3 s; the 0.3 s step timeout abandons that worker.
    hung = {"left": 1}

    def factory(**kwargs):
        env = CounterEnv(**kwargs)
        original = env.step

        def step(text):
            if hung["left"]:
                hung["left"] -= 1
                time.sleep(3.0)
            return original(text)

        env.step = step  # type: ignore[method-assign]
        return env

    register("hangs", factory)
    began = time.perf_counter()
    with RolloutCollector(LocalPool("hangs", num_workers=2, backend="thread"), step_timeout_s=0.3) as collector:
        trajectories = collector.collect(goal_tasks(1, 2), CounterExpert())
        stats = collector.last_stats
    assert time.perf_counter() - began < 2.5
    assert all(t.valid and t.success for t in trajectories)
    assert stats.timeouts == 1 and stats.retries == 1
    assert sorted(t.attempts for t in trajectories) == [1, 2]


def test_a_policy_that_breaks_its_contract_stops_collection_cleanly() -> None:
    class Broken(CounterExpert):
        def generate(self, dialogues, **kwargs):
            return super().generate(dialogues, **kwargs)[:-1]

    collector = RolloutCollector(InProcessPool("counter", num_workers=2))
    with pytest.raises(RolloutError, match="one per dialogue"):
        collector.collect(goal_tasks(1, 2), Broken())
    assert not collector.pool.started


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_batch": 0}, "max_batch"),
        ({"history_responses": -1}, "history_responses"),
        ({"max_retries": -1}, "max_retries"),
        ({"step_timeout_s": 0}, "step_timeout_s"),
        ({"gather_wait_s": -1}, "gather_wait_s"),
    ],
)
def test_bad_settings_are_rejected_with_their_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RolloutCollector(InProcessPool("counter"), **kwargs)


def test_screens_are_numpy_images() -> None:
    with RolloutCollector(InProcessPool("counter", {"screen_size": (8, 6)})) as collector:
        (trajectory,) = collector.collect(goal_tasks(1), CounterExpert())
    shot = trajectory.turns[0].observation.screenshot
    assert isinstance(shot, np.ndarray) and shot.shape == (6, 8, 3) and shot.dtype == np.uint8


def test_request_stop_ends_a_slow_collection_within_seconds() -> None:
    """SIGTERM's path: the handler calls request_stop(); collect raises CollectionStopped, pool closed."""
    import threading

    from steprl.rollout.collector import CollectionStopped

    pool = LocalPool("counter", num_workers=2, backend="thread", env_kwargs={"step_latency_s": 0.2})
    collector = RolloutCollector(pool)
    threading.Timer(0.5, collector.request_stop).start()
    began = time.perf_counter()
    with pytest.raises(CollectionStopped, match="to go"):
        collector.collect(goal_tasks(9, 9, 9, 9, 9, 9), CounterExpert())  # ~12 s of env steps unstopped
    assert time.perf_counter() - began < 3.0
    assert not pool.started
    with pytest.raises(CollectionStopped):  # and it stays stopped: the run is ending
        collector.collect(goal_tasks(1), CounterExpert())


def test_a_long_env_op_is_named_in_the_log(caplog) -> None:
    """A quiet console during a slow reset says what it waits for (worker, op, task, timeout)."""
    caplog.set_level("INFO", logger="steprl.rollout.collector")
    pool = LocalPool("counter", num_workers=1, backend="thread", env_kwargs={"reset_latency_s": 0.8})
    with RolloutCollector(pool, wait_log_s=0.3) as collector:
        (trajectory,) = collector.collect(goal_tasks(1), CounterExpert())
    assert trajectory.valid
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert waits and "worker 0, reset of task g1" in waits[0] and "timeout 600 s" in waits[0]


def test_env_op_failures_are_counted_for_the_health_metrics() -> None:
    pool = InProcessPool("counter", num_workers=1, env_kwargs={"fault_step_raise_prob": 1.0, "fault_seed": 0})
    with RolloutCollector(pool, max_retries=1, max_consecutive_failures=5) as collector:
        (trajectory,) = collector.collect(goal_tasks(2), CounterExpert())
        stats = collector.last_stats
    # two attempts (max_retries=1), each failing at its first step: 2 failures, 2 restarts, 1 retry
    assert not trajectory.valid and (stats.failures, stats.restarts, stats.retries, stats.env_errors) == (2, 2, 1, 1)
