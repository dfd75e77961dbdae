"""Trajectories → training samples, and action equivalence (docs/algorithm.md §3, §4, §6)."""

from __future__ import annotations

import numpy as np
import pytest

from steprl.algo.samples import actions_equivalent, normalise_text, step_samples, trajectory_sample
from steprl.types import Action, Observation, Task, Trajectory, Turn


def screen(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, np.uint8)


def four_turns() -> Trajectory:
    task = Task(id="t", family="f", instruction="open the file")
    turns = [
        Turn(
            observation=Observation(screen(t), "open the file", a11y=f"tree {t}"),
            response=f"Action: step {t}",
            response_ids=(10 + t, 20 + t),
        )
        for t in range(4)
    ]
    return Trajectory(task=task, turns=turns, score=1.0, success=True)


def test_step_samples_carry_the_history_window():
    samples = step_samples(four_turns(), 0.75, history_responses=2, history_screenshots=1)
    assert len(samples) == 4
    assert all(s.advantage == 0.75 and s.task_id == "t" and s.source == "step" and s.group == "t" for s in samples)
    last = samples[3].dialogue  # turns 1, 2 as history (2's screenshot shown), then turn 3
    assert last.instruction == "open the file" and last.a11y == "tree 3"
    assert [t.response for t in last.turns] == ["Action: step 1", "Action: step 2", "Action: step 3"]
    assert [t.screenshot is not None for t in last.turns] == [False, True, True]
    assert int(last.turns[1].screenshot[0, 0, 0]) == 2 and int(last.turns[2].screenshot[0, 0, 0]) == 3
    assert [t.trainable for t in last.turns] == [False, False, True]
    assert last.turns[2].response_ids == (13, 23)  # the rollout's own token ids
    first = samples[0].dialogue
    assert len(first.turns) == 1 and first.turns[0].trainable and int(first.turns[0].screenshot[0, 0, 0]) == 0


def test_step_samples_with_default_window_show_no_past_screenshot():
    samples = step_samples(four_turns(), 1.0)  # k = 3, m = 0
    assert [t.screenshot is not None for t in samples[3].dialogue.turns] == [False, False, False, True]


def test_per_step_advantages():
    samples = step_samples(four_turns(), np.array([0.1, 0.2, 0.3, 0.4]), group="g")
    assert [s.advantage for s in samples] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert {s.group for s in samples} == {"g"}
    assert isinstance(samples[0].advantage, float)
    with pytest.raises(ValueError, match="3 advantages for a trajectory of 4 steps"):
        step_samples(four_turns(), [0.1, 0.2, 0.3])


def test_trajectory_sample():
    sample = trajectory_sample(four_turns(), -0.5, max_images=2)
    assert sample.source == "trajectory" and sample.advantage == -0.5 and sample.task_id == "t"
    assert all(t.trainable for t in sample.dialogue.turns)
    assert [t.screenshot is not None for t in sample.dialogue.turns] == [False, False, True, True]


def test_normalise_text():
    assert normalise_text("  Hello \t  World\n") == "hello world"
    assert normalise_text(None) == ""


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (Action("click", (100, 100)), Action("click", (110, 110)), True),  # 14.1 px apart
        (Action("click", (100, 100)), Action("click", (112, 116)), True),  # exactly 20 px (12² + 16² = 20²)
        (Action("click", (100, 100)), Action("click", (115, 115)), False),  # 21.2 px
        (Action("click", (100, 100)), Action("left_double", (100, 100)), False),  # another type
        (Action("click", (100, 100)), Action("click", None), False),
        (Action("type", text="Hello  World"), Action("type", text=" hello world"), True),
        (Action("type", text="hello\n"), Action("type", text="hello"), False),  # one submits
        (Action("type", text="Hello \n"), Action("type", text="hello\n"), True),
        (Action("hotkey", text="ctrl c"), Action("hotkey", text="C  ctrl"), True),  # keys as a set
        (Action("hotkey", text="ctrl c"), Action("hotkey", text="ctrl v"), False),
        (Action("press", text="Enter"), Action("press", text="enter"), True),
        (Action("scroll", (50, 50), direction="down"), Action("scroll", (55, 50), direction="down"), True),
        (Action("scroll", (50, 50), direction="down"), Action("scroll", (50, 50), direction="up"), False),
        (Action("drag", (0, 0), (100, 0)), Action("drag", (5, 0), (95, 0)), True),
        (Action("drag", (0, 0), (100, 0)), Action("drag", (0, 0), (150, 0)), False),  # end point far
        (Action("finished", text=None), Action("finished", text=""), True),
        (Action("finished", text="42"), Action("finished", text="43"), False),
        (Action("wait"), Action("wait"), True),
        (None, Action("wait"), False),
        (None, None, False),  # unparseable never matches
    ],
)
def test_actions_equivalent(a, b, same):
    assert actions_equivalent(a, b, radius_px=20.0) is same
    assert actions_equivalent(b, a, radius_px=20.0) is same  # symmetric


def test_radius_is_a_knob():
    assert actions_equivalent(Action("click", (0, 0)), Action("click", (30, 40)), radius_px=50.0)  # 50 px
    assert not actions_equivalent(Action("click", (0, 0)), Action("click", (30, 40)), radius_px=49.9)
