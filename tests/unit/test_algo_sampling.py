"""SR-Traj and the epoch schedule (docs/algorithm.md §2)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from steprl.algo.sampling import SRTrajScheduler, UniformScheduler, replacement_probability
from steprl.algo.success_rate import SuccessRateRecorder

TASKS = ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (0.6, 0.5),  # at s0: 1 / (1 + e^0)
        (0.7, 0.7310585786),  # 1 / (1 + e^-1)
        (0.5, 0.2689414214),  # 1 / (1 + e^1)
        (0.0, 0.0024726232),  # 1 / (1 + e^6)
        (1.0, 0.9820137900),  # 1 / (1 + e^-4)
    ],
)
def test_replacement_probability_by_hand(s, expected):
    assert replacement_probability(s, s0=0.6, kappa=10.0) == pytest.approx(expected, rel=1e-7)  # values given to 10 digits


def test_replacement_probability_does_not_overflow():
    assert replacement_probability(100.0, 0.6, 1000.0) == 1.0
    assert replacement_probability(-100.0, 0.6, 1000.0) == 0.0


def test_schedule_walks_shuffled_passes():
    scheduler = UniformScheduler(["t0", "t1", "t2", "t3", "t4"], tasks_per_epoch=2, seed=3)
    walked = [task for epoch in range(5) for task in scheduler.schedule(epoch)]
    assert sorted(walked[:5]) == sorted(walked[5:]) == ["t0", "t1", "t2", "t3", "t4"]  # two full passes
    assert walked[4] == scheduler.schedule(2)[0] and walked[5] == scheduler.schedule(2)[1]  # epoch 2 crosses passes
    assert scheduler.next_epoch == 5


def test_schedule_is_a_function_of_seed_and_epoch():
    first = UniformScheduler(TASKS, tasks_per_epoch=4, seed=7)
    for epoch in range(3):
        first.schedule(epoch)
    fresh = UniformScheduler(TASKS, tasks_per_epoch=4, seed=7)
    assert fresh.schedule(3) == first.schedule(3)  # a resumed run schedules what the full run did
    orders = {tuple(UniformScheduler(TASKS, 6, seed).schedule(0)) for seed in range(10)}
    assert len(orders) > 1  # the seed matters


def test_more_tasks_per_epoch_than_tasks_wraps_into_the_next_pass():
    scheduler = UniformScheduler(["x", "y"], tasks_per_epoch=5, seed=0)
    assert Counter(scheduler.schedule(0)) in (Counter({"x": 3, "y": 2}), Counter({"x": 2, "y": 3}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task_ids": []}, "no tasks"),
        ({"task_ids": ["a", "a"]}, "unique"),
        ({"tasks_per_epoch": 0}, "tasks_per_epoch"),
    ],
)
def test_bad_schedules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SRTrajScheduler(**{"task_ids": TASKS, "tasks_per_epoch": 2, "seed": 0, **kwargs})


def test_unseen_tasks_are_never_replaced_and_never_in_the_cache():
    recorder = SuccessRateRecorder(prior={"a": 0.3})  # the cache is {a}
    scheduler = SRTrajScheduler(TASKS, 2, seed=0, kappa=1000.0)
    allocation = scheduler.reallocate(["b", "c"], 8, recorder)  # b, c never seen
    assert allocation.copies == ["b"] * 8 + ["c"] * 8 and allocation.replaced == []
    assert allocation.cache_size == 1


def test_empty_cache_means_no_replacement():
    recorder = SuccessRateRecorder(prior={"a": 1.0, "b": 0.0, "c": 0.6})  # 1 and s0 above, 0 below: C_Q empty
    allocation = SRTrajScheduler(TASKS, 3, seed=0, kappa=1000.0).reallocate(["a", "b", "c"], 4, recorder)
    assert allocation.copies == ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    assert allocation.num_replaced == 0 and allocation.cache_size == 0


def test_mastered_task_goes_to_the_cache():
    recorder = SuccessRateRecorder(prior={"a": 1.0, "c": 0.3})
    # κ = 1000: p_rep(1.0) = 1 / (1 + e^-400) = 1 to machine precision; p_rep(0.3) = e^-300 ≈ 0
    allocation = SRTrajScheduler(TASKS, 2, seed=0, kappa=1000.0).reallocate(["a", "c"], 3, recorder)
    assert allocation.copies == ["c"] * 6
    assert allocation.replaced == [("a", "c")] * 3
    assert allocation.copies_per_task() == {"c": 6}


def test_replacement_frequency_matches_the_logistic():
    """With a fixed record, each task's copies are replaced at rate p_rep(ŝ) (binomial, 4 sigma),
    targets are uniform over C_Q, and the budget B·N never changes."""
    rates = {"a": 0.9, "b": 0.6, "c": 0.3, "d": 0.0, "e": 0.5}  # "f" unseen
    recorder = SuccessRateRecorder(prior=rates)
    scheduler = SRTrajScheduler(TASKS, len(TASKS), seed=11, s0=0.6, kappa=10.0)
    rounds, copies_per_task = 2000, 8
    replaced_by_task, targets = Counter(), Counter()
    for _ in range(rounds):
        allocation = scheduler.reallocate(TASKS, copies_per_task, recorder)
        assert len(allocation.copies) == len(TASKS) * copies_per_task
        assert allocation.cache_size == 2  # C_Q = {c, e}
        replaced_by_task.update(source for source, _ in allocation.replaced)
        targets.update(target for _, target in allocation.replaced)
    trials = rounds * copies_per_task
    for task, rate in rates.items():
        p = replacement_probability(rate, 0.6, 10.0)
        sigma = math.sqrt(trials * p * (1 - p))
        assert abs(replaced_by_task[task] - trials * p) <= 4 * sigma + 1e-9, task
    assert replaced_by_task["f"] == 0
    assert set(targets) == {"c", "e"}
    total = sum(targets.values())
    assert abs(targets["c"] - total / 2) <= 4 * math.sqrt(total / 4)


def test_uniform_scheduler_never_replaces():
    recorder = SuccessRateRecorder(prior={"a": 1.0, "c": 0.3})
    allocation = UniformScheduler(TASKS, 2, seed=0).reallocate(["a", "c"], 3, recorder)
    assert allocation.copies == ["a", "a", "a", "c", "c", "c"]
    assert allocation.replaced == [] and allocation.cache_size == 1  # still reported for the log


@pytest.mark.parametrize("scheduler_type", [SRTrajScheduler, UniformScheduler])
def test_bad_rollout_count(scheduler_type):
    with pytest.raises(ValueError, match="rollouts_per_task"):
        scheduler_type(TASKS, 2, seed=0).reallocate(["a"], 0, SuccessRateRecorder())


def test_scheduler_state_round_trips_through_torch_save(tmp_path):
    recorder = SuccessRateRecorder(prior={"a": 0.7, "b": 0.65, "c": 0.3, "e": 0.5})
    scheduler = SRTrajScheduler(TASKS, 3, seed=5)
    scheduler.reallocate(scheduler.schedule(0), 8, recorder)
    path = tmp_path / "scheduler.pt"
    torch.save(scheduler.state_dict(), path)
    restored = SRTrajScheduler(TASKS, 3, seed=5)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.next_epoch == 1
    for epoch in (1, 2):
        expected = scheduler.reallocate(scheduler.schedule(epoch), 8, recorder)
        got = restored.reallocate(restored.schedule(epoch), 8, recorder)
        assert got == expected  # same tasks and the same replacement draws


def test_state_from_another_task_list_is_refused():
    state = SRTrajScheduler(TASKS, 3, seed=5).state_dict()
    with pytest.raises(ValueError, match="same env tasks and seed"):
        SRTrajScheduler(TASKS[:-1], 3, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="tasks_per_epoch"):
        SRTrajScheduler(TASKS, 4, seed=5).load_state_dict(state)


def test_a_passed_generator_is_used():
    recorder = SuccessRateRecorder(prior={"a": 0.7, "c": 0.3, "e": 0.5})
    scheduler = SRTrajScheduler(TASKS, 3, seed=5)
    one = scheduler.reallocate(["a"] * 20, 8, recorder, generator=np.random.default_rng(1))
    two = scheduler.reallocate(["a"] * 20, 8, recorder, generator=np.random.default_rng(1))
    assert one == two and one.num_replaced > 0
