"""The run's own callbacks: NaN for undefined rates, RunHealth, the per-epoch line, pictures, and
progress from the first rollout (hand-computed numbers, fake trainers)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from PIL import Image

from steprl.errors import RunFailedError
from steprl.lightning.callbacks import Evaluation, RolloutProgress, RunHealth, epoch_line, rate
from steprl.lightning.plots import success_curve, task_success_heatmap


def test_a_rate_over_nothing_is_nan():
    assert math.isnan(rate(0, 0)) and rate(3, 4) == 0.75


def health_totals(trajectories, valid, errors):
    return {"trajectories": trajectories, "valid": valid, "env_errors": errors, "restarts": 16, "retries": 8, "timeouts": 1, "quarantined": 0}


def test_run_health_stops_an_epoch_without_a_valid_trajectory():
    health = RunHealth(max_env_error_share=None)
    assert "none of the 8 trajectories was valid" in health.problem(health_totals(8, 0, 8))
    assert health.problem(health_totals(8, 1, 7)) is None  # only the no-valid rule without a share


def test_run_health_stops_when_env_errors_pass_the_share():
    health = RunHealth(max_env_error_share=0.5)
    assert health.problem(health_totals(8, 4, 4)) is None  # 4/8 = 0.5 is not more than 0.5
    assert "5 of 8 trajectories (62%)" in health.problem(health_totals(8, 3, 5))
    assert health.problem(health_totals(0, 0, 0)) is None  # a resumed epoch that rolled nothing out
    with pytest.raises(ValueError, match="max_env_error_share"):
        RunHealth(max_env_error_share=1.5)


def test_run_health_raises_run_failed_with_the_collector_health():
    report = SimpleNamespace(trajectories=8, valid=0, env_errors=8, collect_stats=SimpleNamespace(restarts=16, retries=16, timeouts=0, quarantined=1))
    trainer = SimpleNamespace(datamodule=SimpleNamespace(last_round=report), world_size=1, current_epoch=2)
    with pytest.raises(RunFailedError) as error:
        RunHealth().on_train_epoch_end(trainer, None)
    assert str(error.value).startswith("Epoch 2: none of the 8")
    assert "16 restarts, 16 retries, 0 timeouts, 1 quarantined" in str(error.value)


def test_evaluation_logs_nan_and_env_errors_when_no_rollout_was_valid():
    class DataModule:
        env_steps_total = 0

        def evaluate(self, policy, **kwargs):
            return SimpleNamespace(success_rate=0.0, valid=0, successes=0, env_errors=4)

    trainer = SimpleNamespace(datamodule=DataModule(), lightning_module=SimpleNamespace(policy=None), strategy=SimpleNamespace())
    values = Evaluation(train_repeats=1).evaluate(trainer, SimpleNamespace(policy=None))
    assert math.isnan(values["eval/success_rate"]) and math.isnan(values["eval/train_success_rate"])
    assert values["eval/env_errors"] == 4 and values["eval/train_env_errors"] == 4


def test_the_epoch_line_has_success_tasks_above_s0_and_time_per_step():
    values = {"rollout/success_rate": 0.625, "rollout/valid": 8, "rollout/trajectories": 8, "eval/success_rate": 0.5,
              "tasks/above_s0": 12, "rollout/env_errors": 0, "time/step_s": 4.06, "time/rollout_s": 2.94}
    line = epoch_line(3, 40, values, tasks={f"t{i}": None for i in range(32)})
    assert line == "epoch 3/40 | success 0.625 (8 valid of 8) | held-out 0.500 | tasks above s0 12/32 | env errors 0 | 4.1 s/step (rollout 2.9 s)"
    assert "success n/a (0 valid of 8)" in epoch_line(1, 2, {**values, "rollout/success_rate": math.nan, "rollout/valid": 0})


def test_progress_is_installed_before_the_initial_evaluation():
    """setup() runs before every on_fit_start, so the initial evaluation (Evaluation.on_fit_start) shows a bar."""
    datamodule = SimpleNamespace(progress=None)
    progress = RolloutProgress()
    progress.setup(SimpleNamespace(is_global_zero=True, datamodule=datamodule), None, "fit")
    assert datamodule.progress == progress.update


def test_the_success_curve_is_a_readable_picture(tmp_path):
    curve = [{"epoch": e, "env_steps_total": 100.0 * e, "success_rate": s, "above_s0": a, "tasks": 32.0}
             for e, s, a in [(1, 0.2, 0), (2, math.nan, 1), (3, 0.5, 4)]]
    evaluations = [{"epoch": 0, "env_steps_total": 0.0, "values": {"eval/success_rate": 0.1, "eval/train_success_rate": 0.15}},
                   {"epoch": 3, "env_steps_total": 300.0, "values": {"eval/success_rate": 0.4, "eval/train_success_rate": math.nan}}]
    path = success_curve(curve, evaluations, tmp_path / "plots" / "success_curve.png", s0=0.75)
    width, height = Image.open(path).size
    assert width >= 1400 and height >= 450
    assert success_curve([], [], tmp_path / "none.png") is None


def test_the_task_heatmap_is_large_enough_to_read(tmp_path):
    history = [{"a": 0.0}, {"a": 0.5, "b": 1.0}]
    width, height = Image.open(task_success_heatmap(history, tmp_path / "task_success.png")).size
    assert width >= 800 and height >= 500
