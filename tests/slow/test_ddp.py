"""A real 2-process CPU DDP run (gloo): each rank rolls out its share, both hold the same record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.train_config import FAST, ROOT

pytestmark = pytest.mark.slow


def test_two_process_cpu_ddp_shards_rollouts_and_agrees_on_the_record(tmp_path):
    probe_dir = tmp_path / "probe"
    command = [
        sys.executable, "train.py", "+experiment=minidesk_step", *FAST,
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2",
        "callbacks.evaluation.initial=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        "+callbacks.rank_probe._target_=tests.probes.RankProbe", f"+callbacks.rank_probe.out_dir={probe_dir}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    per_rank = {rank: [json.loads(line) for line in (probe_dir / f"rank{rank}.jsonl").read_text().splitlines()] for rank in (0, 1)}
    budget = 2 * 4  # data.tasks_per_epoch x data.rollouts_per_task in FAST
    for epoch in (0, 1):
        rank0, rank1 = per_rank[0][epoch], per_rank[1][epoch]
        assert rank0["epoch"] == rank1["epoch"] == epoch
        # each rank rolled out only its share, and the shares add up to the round's budget
        assert 0 < rank0["trajectories"] < budget and 0 < rank1["trajectories"] < budget
        assert rank0["trajectories"] + rank1["trajectories"] == budget
        # the success counts were all-gathered: both ranks hold the same counts and the same record
        assert rank0["task_counts"] == rank1["task_counts"]
        assert rank0["rates"] == rank1["rates"]
    assert (tmp_path / "run" / "metrics.csv").is_file()
