"""SuccessRateRecorder (ŝ_i) and the round counts it is fed with (docs/algorithm.md §1)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from steprl.algo.success_rate import SuccessRateRecorder, counts_from_trajectories, is_success
from steprl.types import Task, Trajectory


def trajectory(task_id: str, score: float, success: bool | None = None, env_error: str | None = None) -> Trajectory:
    task = Task(id=task_id, family="f", instruction="do it")
    return Trajectory(task=task, score=score, success=score >= 1.0 if success is None else success, env_error=env_error)


def test_first_observation_then_ema():
    recorder = SuccessRateRecorder(alpha=0.5)
    recorder.update({"a": (3, 4)})
    assert recorder.get("a") == pytest.approx(0.75)  # first observation: k/n = 3/4
    recorder.update({"a": (1, 4)})
    assert recorder.get("a") == pytest.approx(0.5)  # 0.5·0.75 + 0.5·0.25 = 0.5


def test_alpha_weights_the_newest_round():
    recorder = SuccessRateRecorder(alpha=0.25)
    recorder.update({"a": (1, 2)})  # 0.5
    recorder.update({"a": (4, 4)})
    assert recorder.get("a") == pytest.approx(0.625)  # 0.75·0.5 + 0.25·1 = 0.625


def test_tasks_without_valid_rollouts_are_untouched():
    recorder = SuccessRateRecorder()
    recorder.update({"a": (1, 2), "b": (0, 0)})
    recorder.update({"a": (0, 0)})
    assert recorder.get("a") == pytest.approx(0.5)
    assert not recorder.known("b") and recorder.get("b") is None


def test_prior_is_smoothed_into():
    recorder = SuccessRateRecorder(alpha=0.5, prior={"a": 0.2})
    assert recorder.known("a")
    recorder.update({"a": (1, 1)})
    assert recorder.get("a") == pytest.approx(0.6)  # 0.5·0.2 + 0.5·1


def test_prior_from_file(tmp_path):
    path = tmp_path / "prior.json"
    path.write_text(json.dumps({"a": 0.25, "b": 1}))
    recorder = SuccessRateRecorder.from_file(path, alpha=0.3)
    assert recorder.rates == {"a": 0.25, "b": 1.0} and recorder.alpha == 0.3


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "not valid JSON"), ("[0.5]", "JSON object"), ('{"a": 1.5}', r"in \[0, 1\]")],
)
def test_bad_prior_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "prior.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        SuccessRateRecorder.from_file(path)


@pytest.mark.parametrize("counts", [(5, 4), (-1, 3), (1, -1), ("x", 2)])
def test_bad_counts_are_rejected(counts):
    with pytest.raises(ValueError, match="Task 'a'"):
        SuccessRateRecorder().update({"a": counts})


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        SuccessRateRecorder(alpha=alpha)


def test_counts_skip_env_errors():
    trajectories = [
        trajectory("a", 1.0),
        trajectory("a", 0.0),
        trajectory("a", 1.0, env_error="VM crashed"),  # not an observation
        trajectory("b", 0.0, env_error="timeout"),  # b had no valid rollout at all
        trajectory("c", 0.0),
    ]
    assert counts_from_trajectories(trajectories) == {"a": (1, 2), "c": (0, 1)}


def test_success_threshold_overrides_the_flag():
    partial = trajectory("a", 0.5, success=False)
    assert not is_success(partial)
    assert is_success(partial, success_threshold=0.5)  # score ≥ threshold
    assert not is_success(partial, success_threshold=0.6)
    assert counts_from_trajectories([partial, trajectory("a", 0.2)], success_threshold=0.5) == {"a": (1, 2)}


def test_summaries():
    recorder = SuccessRateRecorder(prior={"a": 0.0, "b": 0.3, "c": 0.6, "d": 0.9, "e": 0.59})
    assert recorder.mean() == pytest.approx(0.478)  # (0 + 0.3 + 0.6 + 0.9 + 0.59) / 5 = 2.39 / 5
    assert recorder.count_above(0.6) == 2  # c (exactly s0 counts) and d
    assert recorder.cache(0.6) == ["b", "e"]  # 0 < ŝ < s0: a (0) and c (= s0) are out
    # every known task is exactly one of: unsolved, in the cache, at/above s0
    zeros = sum(rate == 0.0 for rate in recorder.rates.values())
    assert zeros + len(recorder.cache(0.6)) + recorder.count_above(0.6) == len(recorder)


def test_mean_of_nothing_is_nan():
    assert math.isnan(SuccessRateRecorder().mean())


def test_solve_counts():
    results = {"a": (4, 4), "b": (0, 4), "c": (2, 4), "d": (0, 0), "e": (1, 1)}
    assert SuccessRateRecorder.solve_counts(results) == (2, 1, 1)  # all: a, e; none: b; partial: c; d: none of them


def test_rates_and_copy_are_independent():
    recorder = SuccessRateRecorder(prior={"a": 0.5})
    rates, clone = recorder.rates, recorder.copy()
    rates["a"] = 0.0
    recorder.update({"a": (1, 1)})
    assert clone.get("a") == 0.5 and recorder.get("a") == pytest.approx(0.75)


def test_state_round_trips_through_torch_save(tmp_path):
    recorder = SuccessRateRecorder(alpha=0.5)
    recorder.update({"a": (1, 4), "b": (2, 2)})
    path = tmp_path / "recorder.pt"
    torch.save(recorder.state_dict(), path)
    restored = SuccessRateRecorder(alpha=0.5)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.rates == recorder.rates
    recorder.update({"a": (3, 4)})
    restored.update({"a": (3, 4)})
    assert restored.rates == recorder.rates


def test_bad_state_is_rejected():
    with pytest.raises(ValueError, match="rates"):
        SuccessRateRecorder().load_state_dict({})
    with pytest.raises(ValueError, match="checkpoint"):
        SuccessRateRecorder().load_state_dict({"rates": {"a": np.float64(2.0)}})
