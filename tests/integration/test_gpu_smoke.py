"""scripts/gpu_smoke.py on a CUDA GPU with the tiny model: the bf16 path (Lightning bf16-mixed) and,
where vllm is installed, the colocated vLLM engine. The full 7B run is the script itself:
`python scripts/gpu_smoke.py` (see docs/gpu.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from steprl.policy.vllm_engine import vllm_available

pytestmark = pytest.mark.gpu

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_smoke.py"
CUDA_TINY = ["--tiny", "--device", "cuda", "--dtype", "bfloat16", "--envs", "4", "--steps", "2", "--max-new-tokens", "8"]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = sys.modules["gpu_smoke"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bf16_rollout_and_update_on_cuda(tmp_path):
    report = load_script().main([*CUDA_TINY, "--no-vllm", "--json", str(tmp_path / "out.json")])
    assert report.figures["lora_weights_changed"] is True
    assert report.figures["hf_tokens_per_s"] > 0 and report.figures["train_samples_per_s"] > 0
    assert 0 < report.figures["peak_memory_gib"] < 20


@pytest.mark.skipif(not vllm_available(), reason="vllm is not installed")
def test_vllm_engine_serves_the_trained_adapter_on_cuda(tmp_path):
    report = load_script().main([*CUDA_TINY, "--json", str(tmp_path / "out.json")])
    assert report.figures["vllm_tokens_per_s"] > 0
    assert report.figures["vllm_probe_gap"] <= 0.1
