"""Same seed -> same tasks, screenshots and hashes; snapshot/restore round-trips exactly."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from steprl.envs.minidesk import MiniDeskEnv, MiniDeskSnapshot


def first_of_each_family(env: MiniDeskEnv, split: str):
    seen = {}
    for task in env.tasks(split):
        seen.setdefault(task.family, task)
    return list(seen.values())


def expert_episode(env: MiniDeskEnv, task):
    """(screenshots, hashes) of an expert episode, first observation included."""
    observation = env.reset(task)
    shots, hashes = [observation.screenshot], [observation.state_hash]
    done = False
    while not done:
        result = env.step(env.expert_response())
        shots.append(result.observation.screenshot)
        hashes.append(result.observation.state_hash)
        done = result.done
    return shots, hashes


def test_same_seed_gives_identical_tasks_screenshots_and_hashes():
    a, b = MiniDeskEnv(task_seed=3), MiniDeskEnv(task_seed=3)
    for split in ("train", "test"):
        tasks_a, tasks_b = a.tasks(split), b.tasks(split)
        assert [(t.id, t.instruction, t.config, t.difficulty, t.feasible) for t in tasks_a] == [
            (t.id, t.instruction, t.config, t.difficulty, t.feasible) for t in tasks_b
        ]
        for task_a, task_b in zip(first_of_each_family(a, split), first_of_each_family(b, split)):
            shots_a, hashes_a = expert_episode(a, task_a)
            shots_b, hashes_b = expert_episode(b, task_b)
            assert hashes_a == hashes_b
            assert all(np.array_equal(x, y) for x, y in zip(shots_a, shots_b, strict=True))


def test_other_seed_gives_other_tasks():
    a, b = MiniDeskEnv(task_seed=0), MiniDeskEnv(task_seed=1)
    assert [t.config for t in a.tasks("train")] != [t.config for t in b.tasks("train")]


def test_screenshots_are_rgb_uint8_of_the_screen_size():
    env = MiniDeskEnv(screen_size=[336, 224])  # Hydra passes lists
    observation = env.reset(env.tasks("train")[0])
    assert observation.screenshot.shape == (224, 336, 3) and observation.screenshot.dtype == np.uint8
    assert observation.screen_size == env.screen_size == (336, 224)


def test_screens_are_told_apart_by_pixels_and_hashes():
    env = MiniDeskEnv()
    shots, hashes = {}, {}
    for task in first_of_each_family(env, "train"):
        observation = env.reset(task)
        shots[task.config["start"]] = observation.screenshot
    starts = list(shots)
    for i, first in enumerate(starts):
        for second in starts[i + 1 :]:
            assert not np.array_equal(shots[first], shots[second]), (first, second)


def test_hash_is_stable_across_processes():
    env = MiniDeskEnv()
    task = env.tasks("train")[5]
    here = env.reset(task).state_hash
    code = (
        "from steprl.envs.minidesk import MiniDeskEnv; env = MiniDeskEnv(); "
        "print(env.reset(env.tasks('train')[5]).state_hash)"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there and len(here) == 16


def test_hash_ignores_the_step_counter_but_not_the_state():
    env = MiniDeskEnv()
    task = next(t for t in env.tasks("train") if t.family == "click_button")
    start = env.reset(task).state_hash
    waited = env.step("Action: wait()")
    assert waited.observation.state_hash == start and waited.info["changed"] is False
    clicked = env.step(env.expert_response())
    assert clicked.observation.state_hash != start and clicked.info["changed"] is True


def test_snapshot_restore_round_trip():
    env = MiniDeskEnv()
    task = next(t for t in env.tasks("train") if t.family == "desktop_chain")
    env.reset(task)
    for _ in range(3):
        env.step(env.expert_response())
    snap = env.snapshot()
    saved = env.step("Action: wait()").observation  # the observation of the snapshot's state
    state_at_snap = snap.state.copy()
    # go on to the end of the episode, then come back
    while not env.state.done:
        env.step(env.expert_response())
    assert env.state.done and env.evaluate() == 1.0
    env.restore(snap)
    assert env.state == state_at_snap and env.state.steps == 3 and not env.state.done
    restored = env.step("Action: wait()").observation
    assert restored.state_hash == saved.state_hash
    assert np.array_equal(restored.screenshot, saved.screenshot)
    # the snapshot is reusable and was not changed by the steps taken after restoring
    env.restore(snap)
    assert env.state.steps == 3 and snap.state == state_at_snap


def test_snapshot_of_a_finished_episode_restores_done():
    env = MiniDeskEnv()
    env.reset(env.tasks("train")[0])
    while not env.state.done:
        env.step(env.expert_response())
    snap = env.snapshot()
    env.reset(env.tasks("train")[1])
    env.restore(snap)
    assert env.state.done and env.state.ended_by == "finished" and env.evaluate() == 1.0
    assert env.task == snap.task
    result = env.step("Action: wait()")
    assert result.done and not result.info["action_valid"] and "episode is over" in result.info["error"]


def test_snapshot_pickles_and_restores_into_another_instance():
    a, b = MiniDeskEnv(), MiniDeskEnv()
    task = next(t for t in a.tasks("train") if t.family == "fill_form")
    a.reset(task)
    for _ in range(3):
        a.step(a.expert_response())
    snap = pickle.loads(pickle.dumps(a.snapshot()))
    assert isinstance(snap, MiniDeskSnapshot)
    b.restore(snap)
    assert b.state == a.state
    assert b.expert_response() == a.expert_response()


def test_restore_rejects_other_objects():
    env = MiniDeskEnv()
    with pytest.raises(TypeError, match="snapshot"):
        env.restore({"steps": 3})
