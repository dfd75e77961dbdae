"""MiniDesk task splits and the scripted expert: coverage, disjointness, 100% expert success."""

from __future__ import annotations

import random
import re

import pytest

from steprl.envs.minidesk import FAMILY_NAMES, MiniDeskEnv, collect_expert_demonstrations
from steprl.envs.minidesk.tasks import FAMILIES, _task
from steprl.types import Task


@pytest.fixture(scope="module")
def env() -> MiniDeskEnv:
    return MiniDeskEnv()


def test_default_split_sizes_and_ids(env):
    train, test = env.tasks("train"), env.tasks("test")
    assert len(train) == 128 and len(test) == 64
    for split, tasks in (("train", train), ("test", test)):
        assert all(task.split == split for task in tasks)
        assert all(re.fullmatch(rf"minidesk/[a-z_]+/{split}/\d{{3}}", task.id) for task in tasks)
        assert len({task.id for task in tasks}) == len(tasks)
    assert env.tasks("train")[0].id == "minidesk/click_button/train/000"


def test_every_family_in_both_splits(env):
    for split in ("train", "test"):
        assert {task.family for task in env.tasks(split)} == set(FAMILY_NAMES)
    assert len(FAMILY_NAMES) >= 10


def test_difficulties_span_one_to_five(env):
    assert {task.difficulty for task in env.tasks("train")} == {1, 2, 3, 4, 5}


def test_splits_are_disjoint(env):
    def key(task: Task) -> tuple:
        return task.family, repr(sorted(task.config.items()))

    train = {key(task) for task in env.tasks("train")}
    test = {key(task) for task in env.tasks("test")}
    assert not train & test
    assert not {t.id for t in env.tasks("train")} & {t.id for t in env.tasks("test")}


def test_held_out_split_does_not_depend_on_train_size():
    small, large = MiniDeskEnv(num_train_tasks=20), MiniDeskEnv(num_train_tasks=200)
    assert [t.config for t in small.tasks("test")] == [t.config for t in large.tasks("test")]


def test_families_filter_and_errors():
    env = MiniDeskEnv(families=["click_button", "infeasible"], num_train_tasks=10, num_test_tasks=4)
    assert {t.family for t in env.tasks("train")} == {"click_button", "infeasible"}
    single = MiniDeskEnv(families="shortcut", num_train_tasks=3, num_test_tasks=2)  # one name as a string
    assert {t.family for t in single.tasks("test")} == {"shortcut"}
    with pytest.raises(ValueError, match="Unknown MiniDesk task families"):
        MiniDeskEnv(families=["click_buton"])
    with pytest.raises(ValueError, match="distinct tasks"):
        MiniDeskEnv(families=["shortcut"], num_train_tasks=100)
    with pytest.raises(ValueError, match="split must be"):
        MiniDeskEnv().tasks("validation")


@pytest.mark.parametrize("split", ["train", "test"])
def test_expert_solves_every_task(env, split):
    trajectories = collect_expert_demonstrations(env, env.tasks(split))
    for trajectory in trajectories:
        task = trajectory.task
        assert trajectory.success and trajectory.score == 1.0, task.id
        assert all(turn.action_valid for turn in trajectory.turns), task.id
        last = trajectory.turns[-1].action
        assert last.type == ("finished" if task.feasible else "call_user"), task.id
        if not task.feasible:
            assert trajectory.length == 1
        assert trajectory.length <= env.max_steps


def test_expert_fits_the_budget_on_every_candidate(env):
    """Not only the sampled splits: every candidate of every family (all ~1,300)."""
    longest = 0
    for family in FAMILIES:
        for index, candidate in enumerate(family.candidates(random.Random(f"minidesk:0:{family.name}"))):
            task = _task(family, "train", index, candidate)
            env.reset(task)
            steps, done = 0, False
            while not done:
                done = env.step(env.expert_response()).done
                steps += 1
            assert env.evaluate() == 1.0, task.instruction
            assert env.state.ended_by in ("finished", "call_user"), task.instruction
            longest = max(longest, steps)
    assert longest <= 15


def test_expert_mistakes_are_seeded_and_mostly_recovered(env):
    tasks = [t for t in env.tasks("train") if t.feasible]
    noisy = collect_expert_demonstrations(env, tasks, epsilon=0.3, seed=7)
    again = collect_expert_demonstrations(env, tasks, epsilon=0.3, seed=7)
    clean = collect_expert_demonstrations(env, tasks)
    assert [t.turns[-1].response for t in noisy] == [t.turns[-1].response for t in again]
    assert [len(t.turns) for t in noisy] == [len(t.turns) for t in again]
    assert sum(len(t.turns) for t in noisy) > sum(len(t.turns) for t in clean)  # mistakes cost steps
    success = sum(t.success for t in noisy) / len(noisy)
    assert 0.5 < success < 1.0  # mostly recovered, but some mistakes are fatal or run out of steps


def test_expert_needs_an_rng_for_mistakes(env):
    env.reset(env.tasks("train")[0])
    with pytest.raises(ValueError, match="rng"):
        env.expert_response(epsilon=0.5)
    with pytest.raises(ValueError, match="thought must be"):
        env.expert_response(thought="long")


def test_expert_thoughts(env):
    task = env.tasks("train")[0]  # click_button
    env.reset(task)
    text = env.expert_response(thought="short")
    assert re.fullmatch(r"Thought: Click \w+\.\nAction: click\(start_box='\(\d+,\d+\)'\)", text)
    assert env.expert_response().startswith("Action: click(")


def test_expert_recovers_from_a_wrong_app_and_a_wrong_field(env):
    task = next(t for t in env.tasks("train") if t.family == "fill_field")
    env.reset(task)
    word = task.config["goals"][0]["word"]
    env.step("Action: click(start_box='(436,10)')")  # close Search: back on the desktop
    assert env.state.screen == "desktop"
    env.step("Action: left_double(start_box='(390,110)')")  # open Board instead (icon 10)
    assert env.state.screen == "Board"
    env.step("Action: click(start_box='(436,10)')")
    steps = 0
    while not env.state.done:
        env.step(env.expert_response())
        steps += 1
    assert env.state.query == word and env.evaluate() == 1.0
    assert steps == 4  # open Search, click the field, type the word + "\n", finished
