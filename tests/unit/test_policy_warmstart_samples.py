"""labelled_step_samples: a demonstration's turns in the acting window, each with the expert's label."""

from __future__ import annotations

import numpy as np

from steprl.policy.warmstart import labelled_step_samples
from steprl.types import Observation, Task, Trajectory, Turn


def test_one_sample_per_turn_in_steps_window_with_the_label_as_target():
    screens = [np.full((4, 4, 3), i, np.uint8) for i in range(3)]
    turns = [Turn(Observation(s, "do it"), response=f"took {i}") for i, s in enumerate(screens)]
    samples = labelled_step_samples(Trajectory(Task("t", "f", "do it"), turns), ["a", "b", "c"], history_responses=1)
    assert [s.dialogue.turns[-1].response for s in samples] == ["a", "b", "c"]  # the label, not what was done
    assert all(s.dialogue.turns[-1].trainable and s.advantage == 1.0 and s.task_id == "t" for s in samples)
    # k = 1: the last sample sees only the previous response (as text, no screenshot), then screen 2
    last = samples[2].dialogue.turns
    assert [t.response for t in last[:-1]] == ["took 1"] and last[0].screenshot is None
    assert int(last[-1].screenshot[0, 0, 0]) == 2
