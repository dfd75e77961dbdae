"""Episode bookkeeping shared by the benchmark adapters."""

from __future__ import annotations

import numpy as np
import pytest

from steprl.envs.episode import Episode, NoSnapshots
from steprl.types import Observation


def test_budget_ends_the_episode_on_its_last_step():
    episode = Episode()
    episode.begin(2)
    episode.count_step()
    assert not episode.done and episode.info(x=1) == {"x": 1, "steps": 1, "ended_by": None}
    episode.count_step()
    assert episode.done and episode.ended_by == "budget" and episode.steps == 2


def test_the_first_reason_to_end_is_kept():
    episode = Episode()
    episode.begin(1)
    episode.end("finished")
    episode.count_step()  # the budget is reached too, but the agent ended first
    assert episode.ended_by == "finished"


def test_a_step_after_the_end_runs_nothing():
    episode = Episode()
    episode.begin(3)
    episode.end("call_user")
    last = Observation(np.zeros((2, 2, 3), np.uint8), "x")
    result = episode.over(last)
    assert result.done and result.observation is last
    assert result.info["action_valid"] is False and "episode is over" in result.info["error"]


def test_no_snapshots_names_the_alternative():
    class VM(NoSnapshots):
        pass

    with pytest.raises(NotImplementedError, match="aug_reward=equivalence"):
        VM().snapshot()
    with pytest.raises(NotImplementedError, match="VM cannot restore"):
        VM().restore(None)
    assert VM.supports_snapshot is False
