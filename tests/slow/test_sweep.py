"""Multiruns: the sweep presets (conf/sweep/), a 2 × 2 threshold grid compared with
scripts/compare_runs.py, a crashing job that does not stop the sweep, and the Optuna preset.

The preset checks compose configs only (fast); the multiruns are real `python train.py -m`
subprocesses on MiniDesk with the tiny policy (marked slow)."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.train_config import CONF, ROOT

#: Tiny runs (conf/debug/fast.yaml), in multirun form.
TINY = [
    "debug=fast",
    "callbacks.evaluation.train_repeats=1",
    "callbacks.evaluation.initial=false",
]
#: Keep job directory names to the swept values ("0_algo.s0=0.5,algo.s_low=0.1").
SHORT_DIRS = "hydra.job.config.override_dirname.exclude_keys=[" + ",".join(
    ["sweep", "trainer.max_epochs", *(o.split("=")[0].lstrip("~+") for o in TINY)]
) + "]"


def has_module(name: str) -> bool:
    """find_spec raises, not returns None, when a parent package (here the hydra_plugins namespace) is absent."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


HAS_OPTUNA = has_module("hydra_plugins.hydra_optuna_sweeper")


def multirun(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """`python train.py -m ARGS` from the repository root, W&B off, no network."""
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run([sys.executable, "train.py", "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def sweep_jobs(preset: str) -> list[dict[str, str]]:
    """The jobs Hydra's basic sweeper makes from a preset's hydra.sweeper.params (no run)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"+sweep={preset}"], return_hydra_config=True)
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    return [dict(o.split("=", 1) for o in job) for batch in batches for job in batch]


# ------------------------------------------------------------------------------------------ presets
def test_thresholds_preset_is_the_paper_grid():
    jobs = sweep_jobs("thresholds")
    assert len(jobs) == 12
    assert {(job["algo.s0"], job["algo.s_low"]) for job in jobs} == {
        (s0, s_low) for s0 in ("0.4", "0.5", "0.6", "0.7") for s_low in ("0.1", "0.2", "0.3")
    }


def test_ablation_preset_runs_every_method_with_three_seeds():
    jobs = sweep_jobs("ablation")
    experiments = {job["+experiment"] for job in jobs}
    assert len(jobs) == 24 and {job["seed"] for job in jobs} == {"0", "1", "2"}
    assert experiments == {
        "minidesk_step", "minidesk_step_no_srtraj", "minidesk_step_no_sradv", "minidesk_step_no_slgrpo",
        "minidesk_step_no_both", "minidesk_step_decomp_only", "minidesk_tgrpo", "minidesk_gigpo",
    }
    assert all((CONF / "experiment" / f"{name}.yaml").is_file() for name in experiments)


@pytest.mark.skipif(not HAS_OPTUNA, reason="needs hydra-optuna-sweeper (pip install -e '.[optuna]')")
def test_optuna_preset_composes_with_its_search_space():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+sweep=thresholds_optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert dict(sweeper.params) == {"algo.s0": "interval(0.3, 0.8)", "algo.s_low": "interval(0.05, 0.4)"}
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    assert cfg.optimized_metric == "eval/train_success_rate"


# ------------------------------------------------------------------------------------------ multiruns
@pytest.mark.slow
def test_threshold_grid_multirun_then_compare_runs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    multirun(["+sweep=thresholds", "algo.s0=0.5,0.6", "algo.s_low=0.1,0.2", "trainer.max_epochs=2", *TINY,
              f"hydra.sweep.dir={sweep_dir}", SHORT_DIRS])

    jobs = job_dirs(sweep_dir)
    assert [p.name for p in jobs] == [
        "0_algo.s0=0.5,algo.s_low=0.1", "1_algo.s0=0.5,algo.s_low=0.2",
        "2_algo.s0=0.6,algo.s_low=0.1", "3_algo.s0=0.6,algo.s_low=0.2",
    ]
    for job in jobs:
        assert not (job / "error.txt").exists(), (job / "error.txt").read_text()
        rows = list(csv.DictReader((job / "metrics.csv").open()))
        assert {row["epoch"] for row in rows} == {"0", "1"}
        assert any(row.get("eval/train_success_rate") for row in rows)
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert f"algo.s0={config['algo']['s0']},algo.s_low={config['algo']['s_low']}" in job.name

    out = tmp_path / "comparison"
    done = subprocess.run([sys.executable, "scripts/compare_runs.py", str(sweep_dir), "--out", str(out), "--markdown"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for s0 in ("0.5", "0.6"):
        for s_low in ("0.1", "0.2"):
            assert any(line.startswith(f"algo.s0={s0} algo.s_low={s_low} ") and " eval/train_success_rate " in line for line in lines), done.stdout
    assert "FAILED" not in done.stdout
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert len(summary) == 4 and all(row["n"] == "1" for row in summary)
    assert all(0.0 <= float(row["final_success_mean"]) <= 1.0 and float(row["env_steps_mean"]) > 0 for row in summary)
    for name in ("success_vs_epoch", "success_vs_env_steps", "time_per_step", "threshold_heatmap"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "summary.md").read_text().count("\n") == 6  # header, rule, 4 rows


@pytest.mark.slow
def test_a_crashing_job_does_not_stop_the_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = multirun(["algo.s0=1.5,0.5", "trainer.max_epochs=1", *TINY,
                     f"hydra.sweep.dir={sweep_dir}", SHORT_DIRS])

    bad, good = job_dirs(sweep_dir)
    assert bad.name == "0_algo.s0=1.5" and good.name == "1_algo.s0=0.5"
    assert "algo.s0=1.5 must be in (0, 1)" in (bad / "error.txt").read_text()
    assert not (bad / "metrics.csv").exists()
    assert "This job failed; the sweep goes on" in done.stdout + done.stderr
    assert not (good / "error.txt").exists()
    assert [row["epoch"] for row in csv.DictReader((good / "metrics.csv").open())] == ["0"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OPTUNA, reason="needs hydra-optuna-sweeper (pip install -e '.[optuna]')")
def test_optuna_sweep_goes_on_after_a_failed_trial(tmp_path):
    """Two trials; the sampler (seed 0) draws s_low=0.9 first (>= s0: the config check stops that
    trial) and 0.1 second. A failed job must not end the study."""
    sweep_dir = tmp_path / "sweep"
    multirun(["+sweep=thresholds_optuna", "hydra.sweeper.n_trials=2", "algo.s_low=choice(0.9,0.1)",
              "optimized_metric=rollout/success_rate", "trainer.max_epochs=1", *TINY,
              f"hydra.sweep.dir={sweep_dir}"])

    assert (sweep_dir / "0" / "error.txt").is_file() and (sweep_dir / "1" / "metrics.csv").is_file()
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_params"]["algo.s_low"] == 0.1
    assert 0.0 <= results["best_value"] <= 1.0
