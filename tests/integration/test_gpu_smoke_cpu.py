"""scripts/gpu_smoke.py on the CPU (--tiny): the code path the GPU smoke run takes, end to end.

The first test runs the script as the GPU machine will, in a fresh interpreter in which hydra,
omegaconf and wandb cannot be imported (they are not installed there). The second runs it in bf16
with bf16-mixed training (the GPU run's dtypes) and the fake `vllm` of tests/fake_vllm.py, so the
vLLM phase (base weights saved, engine started from them, adapter pushed, probe checked, rollout)
runs too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from steprl.policy.vllm_engine import vllm_available
from tests import fake_vllm

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_smoke.py"
SMALL = ["--tiny", "--envs", "4", "--steps", "2", "--max-new-tokens", "8", "--batch-size", "4"]

#: Runs the script with hydra / omegaconf / wandb made unimportable, then checks none got in.
BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.machinery, runpy, sys
    BLOCKED = ("hydra", "omegaconf", "wandb")

    class HidingPathFinder(importlib.machinery.PathFinder):
        # The path finder, blind to the blocked packages: for them find_spec says "not installed"
        # (None), as on a machine without them, and `import` raises ModuleNotFoundError.
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)

    sys.meta_path[:] = [HidingPathFinder if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
    for name in BLOCKED:
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"the test could not hide {{name}}")
    sys.argv = [{script!r}, *{args!r}]
    runpy.run_path({script!r}, run_name="__main__")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("BLOCKED-IMPORTS-OK")
    """
)


def test_smoke_script_runs_on_cpu_without_hydra_omegaconf_wandb(tmp_path):
    out = tmp_path / "gpu_smoke.json"
    code = BLOCKED_RUN.format(script=str(SCRIPT), args=[*SMALL, "--json", str(out)])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "BLOCKED-IMPORTS-OK" in result.stdout
    for line in ("gpu smoke: tiny", "hf rollout", "step update", "hf_tokens_per_s", "train_samples_per_s", "peak_memory_gib"):
        assert line in result.stdout, line
    if not vllm_available():
        assert "vllm: not installed on this machine" in result.stdout
    report = json.loads(out.read_text())
    figures = report["figures"]
    assert figures["lora_weights_changed"] is True
    assert figures["hf_generated_tokens"] > 0 and figures["hf_tokens_per_s"] > 0
    assert figures["env_steps"] == 8  # 4 episodes x 2 steps (random text never ends an episode early)
    assert figures["train_samples"] == 8 and figures["train_samples_per_s"] > 0
    assert set(report["phases_s"]) == {"tokenizer", "model", "hf rollout", "step update"}


def test_smoke_script_vllm_phase_with_a_fake_vllm(tmp_path, monkeypatch, capsys):
    import importlib.util

    fake = fake_vllm.install(monkeypatch)
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_smoke", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    report = module.main(["--tiny", "--dtype", "bfloat16", "--envs", "2", "--steps", "2", "--max-new-tokens", "6", "--batch-size", "4",
                          "--json", str(tmp_path / "out.json")])
    assert {"vllm save base", "vllm start + push", "vllm rollout"} <= set(report.phases_s)
    assert report.figures["vllm_tokens_per_s"] > 0 and report.figures["lora_weights_changed"] is True
    assert report.figures["vllm_probe_gap"] <= 0.1  # vLLM served the trained adapter on the saved base
    init = next(event for event in fake.events if event[0] == "init")[1]
    assert init["enforce_eager"] is True and init["max_lora_rank"] == 64
    assert any(event[0] == "add_lora" for event in fake.events)
    assert "vllm_tokens_per_s" in capsys.readouterr().out
