"""steprl.analysis and scripts/compare_runs.py on small synthetic run directories (numbers by hand)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steprl.analysis import (
    RunDirError,
    compare,
    expand_run_dirs,
    group_runs,
    load_run,
    load_runs,
    mean_std,
    multirun_group,
    summarize,
    summarize_run,
    threshold_grid,
    training_curve,
    wandb_group,
)
from steprl.analysis.curves import heldout_curve
from steprl.analysis.demo import config, demo_sweep, write_run
from tests.train_config import ROOT

SCRIPT = ROOT / "scripts" / "compare_runs.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rows(rollout, step_s, env_total, train_eval=None, heldout=None, above=None, initial=None):
    """metrics.csv rows: one per epoch; eval keys only on the epochs given in their dicts."""
    out = []
    for epoch, (rate, seconds, total) in enumerate(zip(rollout, step_s, env_total)):
        row = {"epoch": epoch, "step": epoch, "rollout/success_rate": rate, "time/step_s": seconds,
               "rollout/env_steps_total": total, "time/update_s": seconds / 2, "time/generate_s": seconds / 2}
        if above is not None:
            row["tasks/above_s0"] = above[epoch]
        if train_eval and epoch in train_eval:
            row["eval/train_success_rate"] = train_eval[epoch]
        if heldout and epoch in heldout:
            row["eval/success_rate"] = heldout[epoch]
        if initial is not None and epoch == 0:
            row["eval/initial_train_success_rate"] = initial
        out.append(row)
    return out


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Setting A (s0=0.5, s_low=0.1) with seeds 0, 1, 2 and eval metrics; setting B (s0=0.6) with
    one seed and rollout metrics only; one job that crashed before logging anything."""
    root = tmp_path / "sweep"
    a = [  # (final train SR, best train SR, held-out, step times, tasks above s0)
        dict(train_eval={1: 0.6, 2: 0.5}, heldout={2: 0.4}, step_s=[1, 2, 3], above=[0, 1, 1]),
        dict(train_eval={1: 0.7, 2: 0.7}, heldout={2: 0.5}, step_s=[2, 2, 2], above=[0, 1, 2]),
        dict(train_eval={1: 0.8, 2: 0.9}, heldout={2: 0.6}, step_s=[3, 3, 3], above=[1, 2, 3]),
    ]
    for seed, spec in enumerate(a):
        write_run(
            root / f"{seed}_algo.s0=0.5,algo.s_low=0.1,seed={seed}",
            config(0.5, 0.1, seed),
            rows([0.2, 0.4, 0.3], spec["step_s"], [10, 20, 30], spec["train_eval"], spec["heldout"], spec["above"], initial=0.1),
            ["algo.s0=0.5", "algo.s_low=0.1", f"seed={seed}"],
        )
    write_run(root / "3_algo.s0=0.6,algo.s_low=0.1,seed=0", config(0.6, 0.1, 0),
              rows([0.25, 0.5, 0.75], [4, 4, 4], [12, 24, 36], above=[0, 1, 2]), ["algo.s0=0.6", "algo.s_low=0.1", "seed=0"])
    write_run(root / "4_algo.s0=0.6,algo.s_low=0.2,seed=0", config(0.6, 0.2, 0), (),
              ["algo.s0=0.6", "algo.s_low=0.2", "seed=0"], error="Traceback (most recent call last):\nRuntimeError: boom\n")
    return root


# ------------------------------------------------------------------------------------------ formulas
def test_mean_and_sample_std_by_hand():
    # mean(0.5, 0.7, 0.9) = 0.7; deviations -0.2, 0, 0.2 -> (0.04 + 0 + 0.04) / (3 - 1) = 0.04 -> std 0.2
    mean, std, n = mean_std([0.5, 0.7, 0.9])
    assert (mean, n) == (pytest.approx(0.7), 3) and std == pytest.approx(0.2)
    # NaN (a key a run never logged) is left out: mean(1, 3) = 2, std sqrt(((−1)² + 1²) / 1) = sqrt(2)
    mean, std, n = mean_std([1.0, math.nan, 3.0])
    assert (mean, n) == (2.0, 2) and std == pytest.approx(math.sqrt(2))
    # one seed: no std; no value: NaN
    assert mean_std([0.4])[0] == 0.4 and math.isnan(mean_std([0.4])[1])
    assert math.isnan(mean_std([])[0]) and math.isnan(mean_std([math.nan])[0])


def test_run_summary_by_hand(sweep):
    summary = summarize_run(load_run(next(sweep.glob("0_*"))))
    assert summary.success_key == "eval/train_success_rate"
    assert summary.final_success == pytest.approx(0.5)  # last eval/train_success_rate (epoch 2)
    assert summary.best_success == pytest.approx(0.6)  # max(0.6, 0.5); the initial 0.1 is not counted
    assert summary.heldout_success == pytest.approx(0.4)
    assert summary.above_s0 == 1
    assert summary.env_steps == 30  # last rollout/env_steps_total
    assert summary.step_time == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert summary.wall_time == pytest.approx(6.0)  # 1 + 2 + 3
    assert summary.epochs == 3


def test_rollout_success_is_the_fallback(sweep):
    summary = summarize_run(load_run(next(sweep.glob("3_*"))))
    assert summary.success_key == "rollout/success_rate"
    assert (summary.final_success, summary.best_success) == (0.75, 0.75)
    assert math.isnan(summary.heldout_success)


def test_curves_are_placed_where_they_were_measured(sweep):
    run = load_run(next(sweep.glob("0_*")))
    train = training_curve(run)
    # eval of epoch e is after e + 1 updates; the initial eval is at 0 updates, 0 env steps
    assert train.iterations.tolist() == [0.0, 2.0, 3.0]
    assert train.env_steps.tolist() == [0.0, 20.0, 30.0]
    assert train.values.tolist() == pytest.approx([0.1, 0.6, 0.5])
    assert heldout_curve(run).iterations.tolist() == [3.0]
    rollout = training_curve(load_run(next(sweep.glob("3_*"))))
    # rollout/success_rate of epoch e comes from the policy after e updates
    assert rollout.iterations.tolist() == [0.0, 1.0, 2.0] and rollout.env_steps.tolist() == [12.0, 24.0, 36.0]


# ------------------------------------------------------------------------------------------ groups
def test_seeds_are_grouped_with_mean_and_std_by_hand(sweep):
    runs = load_runs([sweep])
    assert len(runs) == 5
    groups = {group.label: group for group in summarize(runs)}
    assert set(groups) == {"algo.s0=0.5", "algo.s0=0.6"}  # s_low=0.1 is shared, seeds are grouped
    a = groups["algo.s0=0.5"]
    assert a.size == 3
    # final 0.5, 0.7, 0.9 -> 0.7 ± 0.2 (see test_mean_and_sample_std_by_hand)
    assert a.stats("final_success")[:2] == pytest.approx((0.7, 0.2))
    # best 0.6, 0.7, 0.9: mean 2.2 / 3 = 0.73333; deviations -0.13333, -0.03333, 0.16667;
    # squares 0.017778 + 0.001111 + 0.027778 = 0.046667; / 2 = 0.023333; sqrt = 0.152753
    assert a.stats("best_success")[:2] == pytest.approx((0.733333, 0.152753), abs=1e-6)
    # held-out 0.4, 0.5, 0.6 -> 0.5 ± 0.1; tasks above s0 1, 2, 3 -> 2 ± 1
    assert a.stats("heldout_success")[:2] == pytest.approx((0.5, 0.1))
    assert a.stats("above_s0")[:2] == pytest.approx((2.0, 1.0))
    # wall time 6, 6, 9 -> 7; deviations -1, -1, 2 -> (1 + 1 + 4) / 2 = 3 -> sqrt(3) = 1.732051
    assert a.stats("wall_time")[:2] == pytest.approx((7.0, math.sqrt(3)))
    # mean step time 2, 2, 3 -> 2.33333; deviations -1/3, -1/3, 2/3 -> (1/9 + 1/9 + 4/9) / 2 = 1/3 -> 0.57735
    assert a.stats("step_time")[:2] == pytest.approx((7 / 3, math.sqrt(1 / 3)))
    b = groups["algo.s0=0.6"]
    assert b.size == 1 and b.success_key == "rollout/success_rate"
    assert b.stats("final_success")[0] == 0.75 and math.isnan(b.stats("final_success")[1])


def test_group_by_config_keys_and_per_run(sweep):
    runs = [run for run in load_runs([sweep]) if run.has_metrics]
    by_s_low = group_runs(runs, by=["algo.s_low"])
    assert [(label, len(members)) for label, members in by_s_low] == [("algo.s_low=0.1", 4)]
    per_run = group_runs(runs, by=["none"])
    assert [label for label, _ in per_run] == [
        "algo.s0=0.5 seed=0", "algo.s0=0.5 seed=1", "algo.s0=0.5 seed=2", "algo.s0=0.6 seed=0"
    ]
    with pytest.raises(KeyError, match="no_such"):
        group_runs(runs, by=["algo.no_such"])


def test_threshold_grid_by_hand(sweep):
    grid = threshold_grid(summarize(load_runs([sweep])))
    assert grid.s0 == [0.5, 0.6] and grid.s_low == [0.1]
    # cell (s_low=0.1, s0=0.5): final 0.5, 0.7, 0.9 -> 0.7 ± 0.2 (n=3); cell s0=0.6: 0.75 (n=1)
    assert grid.mean[0].tolist() == pytest.approx([0.7, 0.75])
    assert grid.std[0, 0] == pytest.approx(0.2) and math.isnan(grid.std[0, 1])
    assert grid.count[0].tolist() == [3, 1]


def test_no_threshold_grid_without_varying_thresholds(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"{seed}_seed={seed}", config(0.6, 0.2, seed), rows([0.5], [1], [5]), [f"seed={seed}"])
    assert threshold_grid(summarize(load_runs([tmp_path]))) is None


def test_sweep_dirs_expand_and_bad_paths_say_what_to_give(sweep, tmp_path):
    run_dir = next(sweep.glob("1_*"))
    found = expand_run_dirs([sweep, run_dir])  # a run given twice is listed once
    assert [p.name.split("_")[0] for p in found] == ["0", "1", "2", "3", "4"]
    with pytest.raises(RunDirError, match="neither a run directory"):
        expand_run_dirs([tmp_path / "sweep" / "0_algo.s0=0.5,algo.s_low=0.1,seed=0" / ".hydra"])
    with pytest.raises(RunDirError, match="does not exist"):
        expand_run_dirs([tmp_path / "missing"])


# ------------------------------------------------------------------------------------------ outputs
def test_compare_writes_table_csv_markdown_and_figures(sweep, tmp_path):
    result = compare([sweep], tmp_path / "out", markdown=True)
    assert "0.700 ± 0.200" in result.table and "rollout/success_rate" in result.table
    assert "FAILED" in result.table and "RuntimeError: boom" in result.table
    markdown = (tmp_path / "out" / "summary.md").read_text().splitlines()
    assert markdown[0].startswith("| run | n | train SR from |") and markdown[1].startswith("|---|")
    assert any(line.startswith("| algo.s0=0.5 | 3 | eval/train_success_rate | 0.700 ± 0.200 |") for line in markdown)
    csv_text = (tmp_path / "out" / "summary.csv").read_text()
    assert csv_text.splitlines()[0].startswith("label,n,success_key,final_success_mean,final_success_std")
    for name in ("success_vs_epoch", "success_vs_env_steps", "time_per_step", "threshold_heatmap"):
        path = result.files[name]
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert min(Image.open(path).size) > 100


def test_cli_prints_the_table_and_writes_pngs(sweep, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, str(SCRIPT), str(sweep), "--out", str(out), "--markdown"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "algo.s0=0.5" in done.stdout and "0.733 ± 0.153" in done.stdout  # best SR of setting A
    assert sorted(p.name for p in out.iterdir()) == [
        "success_vs_env_steps.png", "success_vs_epoch.png", "summary.csv", "summary.md",
        "threshold_heatmap.png", "time_per_step.png",
    ]


def test_cli_default_out_is_inside_the_sweep(tmp_path):
    sweep = demo_sweep(tmp_path / "demo", seeds=(0,), epochs=2)
    done = subprocess.run([sys.executable, str(SCRIPT), str(sweep), "--no-plots"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (sweep / "comparison" / "summary.csv").is_file()
    assert load_runs([sweep])  # the comparison folder is not mistaken for a run


@pytest.mark.parametrize("args, message", [
    (["missing_dir"], "does not exist"),
    (["{sweep}", "--group-by", "algo.no_such"], "no run has the config key"),
])
def test_cli_user_errors_give_one_line(sweep, tmp_path, args, message):
    args = [a.format(sweep=sweep) for a in args]
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "o")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------ W&B group
def test_multirun_group_names_the_sweep():
    assert multirun_group("outputs/minidesk_step/multiruns/thresholds_2025-06-01_12-00-00") == (
        "minidesk_step/thresholds_2025-06-01_12-00-00"
    )
    assert multirun_group("/tmp/my_sweep") == "my_sweep"
    assert wandb_group("minidesk_step") == "minidesk_step"  # not under @hydra.main: the task name


def test_demo_sweep_is_a_valid_comparison(tmp_path):
    groups = summarize(load_runs([demo_sweep(tmp_path, seeds=(0, 1), epochs=3)]))
    assert [g.size for g in groups] == [2, 2, 2, 2]
    assert np.all([0.0 <= g.stats("final_success")[0] <= 1.0 for g in groups])
