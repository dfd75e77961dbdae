"""STEP vs T-GRPO vs GiGPO on MiniWoB++ (CPU): resumable runs, per-task-type success on new instances.

    OMP_NUM_THREADS=1 python scripts/miniwob_compare.py run [--seeds 0 1 2] [--algos step tgrpo gigpo]
    python scripts/miniwob_compare.py report          # results/miniwob/{summary.csv, per_type.csv, *.png}

`run` trains `+experiment=miniwob_<algo>` once per (seed, algorithm), seed-major (every algorithm of
seed 0 first), one run at a time, and appends one JSON line per finished run to
results/miniwob/runs.jsonl; a run already there is skipped, so an interrupted comparison resumes
where it stopped (a failed run is tried again). Each run keeps its checkpoints every `--eval-every` epochs; after the run, each of
them is evaluated per task type on the new instances (test seeds, greedy), and the last one also on
the new instances sampled (`--samples` rollouts each, default none) and on the training instances
(sampled, `--train-repeats` rollouts each), with scripts/warmstart_miniwob.py's evaluator. The warm start itself (epoch 0, shared by every run)
is evaluated the same way once. The number of Chromium processes (`pgrep -c chromium`) is recorded
before and after every run. Run directories go to outputs/miniwob_compare/ (not committed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "miniwob"
RUNS = RESULTS / "runs.jsonl"
OUTPUTS = ROOT / "outputs" / "miniwob_compare"
EXPERIMENT = {"step": "miniwob_step", "tgrpo": "miniwob_tgrpo", "gigpo": "miniwob_gigpo"}
TIME_KEYS = ("time/step_s", "time/rollout_s", "time/env_s", "time/generate_s", "time/old_logprob_s", "time/update_s",
             "time/augment_s", "time/other_s")  # fmt: skip


def chromium_count(settle_s: float = 0.0) -> int:
    """`pgrep -c chromium` (every Chromium process on the machine); with `settle_s`, waits up to
    that long for the count to reach `baseline`-like stability (a quit browser takes a moment)."""
    deadline = time.monotonic() + settle_s
    last = -1
    while True:
        out = subprocess.run(["pgrep", "-c", "chromium"], capture_output=True, text=True).stdout.strip()
        count = int(out or 0)
        if count == last or time.monotonic() >= deadline:
            return count
        last = count
        time.sleep(2.0)


def finished_runs() -> dict[str, dict]:
    """The runs recorded so far by name (a run recorded twice: its newest record)."""
    if not RUNS.is_file():
        return {}
    rows = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]
    return {row["name"]: row for row in rows}


def metrics_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    return list(csv.DictReader(path.open())) if path.is_file() else []


def epoch_table(rows: list[dict]) -> list[dict]:
    """One dict per epoch: every non-empty value logged for that epoch (the CSV has one row per
    log call, so an epoch's metrics are spread over several rows)."""
    epochs: dict[int, dict] = {}
    for row in rows:
        if not row.get("epoch"):
            continue
        entry = epochs.setdefault(int(float(row["epoch"])), {})
        entry.update({k: float(v) for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")})
    return [dict(epoch=e, **epochs[e]) for e in sorted(epochs)]


def evaluate_checkpoint(ckpt: Path | None, args: argparse.Namespace, *, full: bool) -> dict:
    """Per-task-type success of a checkpoint (None: the shipped warm start) on new instances
    (greedy; with `full` also sampled) and, with `full`, on the training instances (sampled `--train-repeats` times)."""
    import torch
    import warmstart_miniwob as ws  # scripts/ is sys.path[0] when this script runs

    from steprl.envs import make
    from steprl.policy.vlm import VLMPolicy

    torch.set_num_threads(1)
    policy = VLMPolicy(str(ROOT / "assets" / "policies" / "tiny-miniwob"), max_new_tokens=32, seed=args.eval_seed, device="cpu")
    if ckpt is not None:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        policy.load_state_dict({k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")})
    ns = argparse.Namespace(tasks=ws.DEFAULT_TASKS, seeds_per_task=4, test_seeds_per_task=6, task_seed=0, max_steps=6,
                            episode_time_limit_s=120.0)  # fmt: skip (conf/setting/miniwob.yaml's instances)
    envs = [make("miniwob", **ws.env_kwargs(ns), first_test_seed=12) for _ in range(args.browsers)]
    out: dict = {}
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(envs)) as pool:
            test = envs[0].tasks("test")
            out["test_greedy"] = per_type(test, ws.run_episodes(policy, envs, test, pool, greedy=True))
            if full and args.samples > 0:
                runs = [ws.run_episodes(policy, envs, test, pool, greedy=False) for _ in range(args.samples)]
                out["test_sampled"] = per_type(test * len(runs), [s for run in runs for s in run])
            if full:
                train = envs[0].tasks("train") * args.train_repeats
                out["train_sampled"] = per_type(train, ws.run_episodes(policy, envs, train, pool, greedy=False))
    finally:
        for env in envs:
            env.close()
    return out


def per_type(tasks: list, scores: list[float]) -> dict[str, float]:
    """Success rate per task type (and "all")."""
    table: dict[str, list[float]] = {}
    for task, score in zip(tasks, scores):
        table.setdefault(task.family, []).append(float(score >= 1.0))
    rates = {name: sum(v) / len(v) for name, v in table.items()}
    rates["all"] = sum(float(s >= 1.0) for s in scores) / len(scores)
    return rates


def train_one(algo: str, seed: int, args: argparse.Namespace) -> dict:
    name = f"{algo}{args.variant}_seed{seed}"
    run_dir = OUTPUTS / name
    command = [
        sys.executable, "train.py", f"+experiment={EXPERIMENT[algo]}", f"seed={seed}", "logger=csv",
        f"trainer.max_epochs={args.epochs}", "~callbacks.evaluation", "callbacks.rollout_progress.enabled=false",
        "trainer.enable_progress_bar=false", "callbacks.model_checkpoint.save_top_k=-1",
        f"callbacks.model_checkpoint.every_n_epochs={args.eval_every}", f"hydra.run.dir={run_dir}",
        *args.overrides,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    before = chromium_count(settle_s=10.0)
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "train.log").open("w") as log:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall_s = time.perf_counter() - started
    after = chromium_count(settle_s=10.0)
    epochs = epoch_table(metrics_rows(run_dir))
    record = {"name": name, "algo": algo + args.variant, "seed": seed, "returncode": result.returncode, "wall_s": wall_s,
              "command": " ".join(command[1:]), "chromium_before": before, "chromium_after": after, "epochs": epochs,
              "evals": []}  # fmt: skip
    checkpoints = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    for index, ckpt in enumerate(checkpoints):
        epoch = int(ckpt.stem.split("_")[1]) + 1  # epoch_003 is saved after the 4th epoch
        steps = next((e.get("rollout/env_steps_total") for e in epochs if e["epoch"] == epoch - 1), None)
        t0 = time.perf_counter()
        evaluation = evaluate_checkpoint(ckpt, args, full=index == len(checkpoints) - 1)
        record["evals"].append({"epoch": epoch, "env_steps_total": steps, "seconds": time.perf_counter() - t0, **evaluation})
    return record


def run(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = finished_runs()
    if "warmstart" not in done:
        t0 = time.perf_counter()
        evaluation = evaluate_checkpoint(None, args, full=True)
        append({"name": "warmstart", "algo": "warmstart", "seed": None, "seconds": time.perf_counter() - t0,
                "evals": [{"epoch": 0, "env_steps_total": 0, **evaluation}]})  # fmt: skip
    for seed in args.seeds:
        for algo in args.algos:
            name = f"{algo}{args.variant}_seed{seed}"
            if name in done and done[name].get("returncode") == 0:
                print(f"{name}: already in {RUNS.relative_to(ROOT)}, skipped", flush=True)
                continue
            if args.deadline and time.time() > args.deadline:
                print(f"{name}: past --deadline, not started", flush=True)
                return
            print(f"{name}: training ...", flush=True)
            record = train_one(algo, seed, args)
            append(record)
            last = record["evals"][-1] if record["evals"] else {}
            print(f"{name}: rc {record['returncode']}, {record['wall_s']:.0f} s, new-instance greedy success "
                  f"{last.get('test_greedy', {}).get('all', float('nan')):.3f}, chromium {record['chromium_before']} -> "
                  f"{record['chromium_after']}", flush=True)  # fmt: skip


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return mean, std


def report() -> None:
    """results/miniwob/summary.csv (per algorithm: success, time per step and its parts, browser
    counts), per_type.csv (per algorithm, epoch and task type: new-instance success) and figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in finished_runs().values() if r["algo"] != "warmstart" and r.get("returncode") == 0]
    warm = finished_runs().get("warmstart")
    order = {name: i for i, name in enumerate(EXPERIMENT)}  # step, tgrpo, gigpo; variants after their algorithm
    algos = sorted({r["algo"] for r in runs}, key=lambda a: (order.get(a.split("_")[0], len(order)), a))
    summary = []
    for algo in algos:
        group = [r for r in runs if r["algo"] == algo]
        row: dict = {"algo": algo, "seeds": len(group), "wall_s": mean_std([r["wall_s"] for r in group])[0]}
        finals = [r["evals"][-1] for r in group if r["evals"]]
        for key, split in (("test_greedy", "new_greedy"), ("test_sampled", "new_sampled"), ("train_sampled", "train_sampled")):
            values = [f[key]["all"] for f in finals if key in f]
            if values:
                row[f"{split}_mean"], row[f"{split}_std"] = mean_std(values)
        for key in TIME_KEYS + ("rollout/env_steps", "rollout/success_rate", "rollout/env_errors", "train/samples"):
            values = [e[key] for r in group for e in r["epochs"] if key in e]
            if values:
                row[key] = sum(values) / len(values)
        row["env_steps_total"] = mean_std([max((e.get("rollout/env_steps_total", 0) for e in r["epochs"]), default=0) for r in group])[0]
        row["env_errors_total"] = sum(e.get("rollout/env_errors", 0) for r in group for e in r["epochs"])
        row["chromium_before"] = ",".join(str(r["chromium_before"]) for r in group)
        row["chromium_after"] = ",".join(str(r["chromium_after"]) for r in group)
        summary.append(row)
    if warm:
        w = warm["evals"][0]
        summary.insert(0, {"algo": "warm start (epoch 0)", "seeds": 1, "new_greedy_mean": w["test_greedy"]["all"],
                           "train_sampled_mean": w["train_sampled"]["all"]})  # fmt: skip
    write_csv(RESULTS / "summary.csv", summary)

    per_type_rows = []
    names = list(warm["evals"][0]["test_greedy"]) if warm else []
    for algo in algos:
        group = [r for r in runs if r["algo"] == algo]
        epochs = sorted({e["epoch"] for r in group for e in r["evals"]})
        for epoch in ([0] if warm else []) + epochs:
            evals = [warm["evals"][0]] * len(group) if epoch == 0 else [e for r in group for e in r["evals"] if e["epoch"] == epoch]
            for name in names:
                row = {"algo": algo, "epoch": epoch, "task_type": name, "runs": len(evals),
                       "env_steps_total": mean_std([e["env_steps_total"] or 0 for e in evals])[0]}  # fmt: skip
                for key in ("test_greedy", "test_sampled", "train_sampled"):
                    values = [e[key][name] for e in evals if key in e and name in e[key]]
                    if values:
                        row[key] = sum(values) / len(values)
                per_type_rows.append(row)
    write_csv(RESULTS / "per_type.csv", per_type_rows)
    write_tables(summary, per_type_rows, runs, names)

    if not algos:
        return
    fig, axes = plt.subplots(3, 4, figsize=(16, 10), sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        for algo in algos:
            rows = [r for r in per_type_rows if r["algo"] == algo and r["task_type"] == name]
            ax.plot([r["env_steps_total"] for r in rows], [r["test_greedy"] for r in rows], marker="o", label=algo)
        ax.set_title(name)
        ax.set_ylim(-0.05, 1.05)
    for ax in axes[-1]:
        ax.set_xlabel("env steps")
    axes[0][0].legend()
    fig.suptitle("MiniWoB++: success on new instances (greedy) vs env steps, mean over seeds")
    fig.tight_layout()
    fig.savefig(RESULTS / "per_type_success_vs_env_steps.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in algos:
        group = [r for r in runs if r["algo"] == algo]
        epochs = sorted({e["epoch"] for r in group for e in r["evals"]})
        xs, ys, es = [0.0], [warm["evals"][0]["test_greedy"]["all"]] if warm else [], [0.0]
        for epoch in epochs:
            evals = [e for r in group for e in r["evals"] if e["epoch"] == epoch]
            m, sd = mean_std([e["test_greedy"]["all"] for e in evals])
            xs.append(mean_std([e["env_steps_total"] or 0 for e in evals])[0]), ys.append(m), es.append(sd)
        ax.errorbar(xs[-len(ys):], ys, yerr=es[-len(ys):], marker="o", capsize=3, label=f"{algo} ({len(group)} seeds)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("success on new instances (greedy)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "success_vs_env_steps.png", dpi=80)
    plt.close(fig)


def write_tables(summary: list[dict], per_type_rows: list[dict], runs: list[dict], names: list[str]) -> None:
    """results/miniwob/tables.md: the summary, the time per step and the per-type tables in Markdown."""
    def cell(row: dict, key: str) -> str:
        if f"{key}_mean" not in row:
            return "-"
        std = row.get(f"{key}_std")
        return f"{row[key + '_mean']:.3f}" + (f" ± {std:.3f}" if std is not None and row.get("seeds", 1) > 1 else "")

    lines = ["| algorithm | seeds | new instances, greedy | training instances, sampled | env steps | env errors | "
             "chromium before -> after |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in summary:
        lines.append(f"| {row['algo']} | {row['seeds']} | {cell(row, 'new_greedy')} | {cell(row, 'train_sampled')} | "
                     f"{row.get('env_steps_total', 0):.0f} | {row.get('env_errors_total', '-')} | "
                     f"{row.get('chromium_before', '-')} -> {row.get('chromium_after', '-')} |")  # fmt: skip
    lines += ["", "| algorithm | run wall (s) | " + " | ".join(k.split("/")[1] for k in TIME_KEYS) + " |",
              "|---|---|" + "---|" * len(TIME_KEYS)]  # fmt: skip
    for row in summary:
        if "time/step_s" in row:
            lines.append(f"| {row['algo']} | {row['wall_s']:.0f} | " + " | ".join(f"{row.get(k, 0):.1f}" for k in TIME_KEYS) + " |")
    last = {}
    for r in per_type_rows:
        if r["epoch"] >= last.get(r["algo"], 0):
            last[r["algo"]] = r["epoch"]
    algos = list(last)
    for key, title in (("test_greedy", "new instances, greedy"), ("train_sampled", "training instances, sampled")):
        lines += ["", f"Per task type, {title} (warm start -> after the last iteration, mean over seeds):", "",
                  "| task type | warm start | " + " | ".join(algos) + " |", "|---|---|" + "---|" * len(algos)]  # fmt: skip
        for name in names:
            warm = next((r.get(key) for r in per_type_rows if r["epoch"] == 0 and r["task_type"] == name), None)
            cells = [next((f"{r[key]:.2f}" for r in per_type_rows if r["algo"] == a and r["epoch"] == last[a]
                           and r["task_type"] == name and key in r), "-") for a in algos]  # fmt: skip
            lines.append(f"| {name} | {'-' if warm is None else f'{warm:.2f}'} | " + " | ".join(cells) + " |")
    (RESULTS / "tables.md").write_text("\n".join(lines) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def append(record: dict) -> None:
    with RUNS.open("a") as f:
        f.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--algos", nargs="+", default=list(EXPERIMENT), choices=list(EXPERIMENT))
    r.add_argument("--epochs", type=int, default=12)
    r.add_argument("--eval-every", type=int, default=6)
    r.add_argument("--train-repeats", type=int, default=2, help="sampled rollouts per training instance at the last checkpoint")
    r.add_argument("--samples", type=int, default=0, help="sampled rollouts per new instance at the last checkpoint (0: greedy only)")
    r.add_argument("--browsers", type=int, default=4)
    r.add_argument("--eval-seed", type=int, default=1234)
    r.add_argument("--deadline", type=float, default=None, help="unix time after which no new run starts")
    r.add_argument("--variant", default="", help="a suffix naming these runs apart (e.g. _lr2e-4 with optimizer.lr=2e-4)")
    r.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        report()


if __name__ == "__main__":
    main()
