"""A CPU stand-in for the `vllm` package, for testing the vLLM engine adapter without a GPU.

`install(monkeypatch)` puts modules `vllm`, `vllm.lora` and `vllm.lora.request` in sys.modules with
the parts of vLLM's API the adapter uses: `LLM(**kwargs)` (loads the base weights from
`kwargs["model"]` like vLLM, and LoRA adapters from their directories with peft), `generate`
(expands each image placeholder to its image's token count, samples with a per-request seed,
returns raw log-probs at temperature 1 and prompt log-probs), `sleep` / `wake_up`,
`llm_engine.add_lora` / `remove_lora`, `reset_prefix_cache`, `SamplingParams`, `EngineArgs`
(with `logprobs_mode`) and `LoRARequest`.

Where steprl depends on it, the fake behaves as the real vLLM does:
- `distributed_executor_backend="external_launcher"` reads `RANK` and `LOCAL_RANK` from os.environ
  (a KeyError when they are missing, as in vLLM's external-launcher executor);
- LoRA runs in float16 / bfloat16 only: `dtype="float32"` with `enable_lora=True` is refused;
- `add_lora` with an id already loaded keeps the cached adapter (a push that reuses an id serves the
  old weights);
- LoRA weights on the vision tower are dropped without an error (only the language model's are
  served) unless `enable_tower_connector_lora=True` (an EngineArgs field of newer vLLMs, e.g. 0.31).

Every call is appended to `FakeVLLM.events` so tests can check the order (sleep before training,
wake and push before generation). `FakeVLLM.serve_first_adapter_only = True` simulates the peers'
silent failure: later adapters are "loaded" but the first one keeps being served.
"""

from __future__ import annotations

import copy
import importlib.machinery
import os
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from steprl.policy.inputs import mrope_positions


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    stop_token_ids: list[int] | None = None
    logit_bias: dict[int, float] | None = None
    seed: int | None = None
    detokenize: bool = True


@dataclass
class EngineArgs:
    model: str = ""
    logprobs_mode: str = "raw_logprobs"
    enable_tower_connector_lora: bool = False


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class Logprob:
    logprob: float


@dataclass
class CompletionOutput:
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput] = field(default_factory=list)


class FakeVLLM:
    """Shared state of the fake (one per `install`)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.instances: list[LLM] = []
        self.serve_first_adapter_only = False


STATE = FakeVLLM()


class _Engine:
    def __init__(self, llm: LLM):
        self.llm = llm

    def add_lora(self, request: LoRARequest) -> bool:
        return self.llm._add_lora(request)

    def remove_lora(self, lora_id: int) -> bool:
        STATE.events.append(("remove_lora", lora_id))
        self.llm.adapters.pop(lora_id, None)
        return True


class LLM:
    def __init__(self, **kwargs: Any):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText

        STATE.events.append(("init", kwargs))
        if kwargs.get("distributed_executor_backend") == "external_launcher":
            self.rank, self.local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])  # as vLLM reads them
        if kwargs.get("enable_lora") and kwargs["dtype"] not in ("float16", "bfloat16"):
            raise ValueError(f"LoRA is only supported with float16 or bfloat16 dtype, got {kwargs['dtype']}.")
        STATE.instances.append(self)
        self.kwargs = kwargs
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[kwargs["dtype"]]
        self.base = AutoModelForImageTextToText.from_pretrained(kwargs["model"], dtype=dtype).eval()
        budget = kwargs.get("mm_processor_kwargs") or {}
        self.image_processor = AutoImageProcessor.from_pretrained(kwargs["model"], **budget)
        self.image_token_id = int(self.base.config.image_token_id)
        self.adapters: dict[int, torch.nn.Module] = {}
        self.asleep = False
        self.llm_engine = _Engine(self)

    # ---- memory ---------------------------------------------------------------------------
    def sleep(self, level: int = 1) -> None:
        STATE.events.append(("sleep", level))
        assert not self.asleep, "sleep() called twice"
        self.asleep = True

    def wake_up(self, tags: list[str] | None = None) -> None:
        STATE.events.append(("wake_up",))
        assert self.asleep, "wake_up() without sleep()"
        self.asleep = False

    def reset_prefix_cache(self) -> bool:
        STATE.events.append(("reset_prefix_cache",))
        return True

    # ---- adapters -------------------------------------------------------------------------
    def _add_lora(self, request: LoRARequest) -> bool:
        from peft import PeftModel

        STATE.events.append(("add_lora", request.lora_int_id))
        if request.lora_int_id in self.adapters:
            return True  # an id already loaded: the cached adapter stays
        if STATE.serve_first_adapter_only and self.adapters:
            first = next(iter(self.adapters.values()))
            self.adapters[request.lora_int_id] = first  # "loaded", but the old weights are served
            return True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft calls a property transformers 5 deprecates
            model = PeftModel.from_pretrained(copy.deepcopy(self.base), request.lora_path).eval()
        if not self.kwargs.get("enable_tower_connector_lora"):
            _drop_vision_lora(model)
        self.adapters[request.lora_int_id] = model
        return True

    def _model(self, lora_request: LoRARequest | None) -> torch.nn.Module:
        if lora_request is None:
            return self.base
        if lora_request.lora_int_id not in self.adapters:
            self._add_lora(lora_request)
        return self.adapters[lora_request.lora_int_id]

    # ---- generation -----------------------------------------------------------------------
    def _expand(self, prompt: dict[str, Any]) -> tuple[list[int], dict[str, torch.Tensor]]:
        ids = list(prompt["prompt_token_ids"])
        images = (prompt.get("multi_modal_data") or {}).get("image") or []
        if not images:
            return ids, {}
        arrays = [np.asarray(image.convert("RGB")) for image in images]
        out = self.image_processor(images=arrays, return_tensors="pt")
        merge = int(getattr(self.image_processor, "merge_size", 2))
        grids = [tuple(int(v) for v in g) for g in out["image_grid_thw"].tolist()]
        expanded, next_image = [], iter(grids)
        for token in ids:
            if token == self.image_token_id:
                t, h, w = next(next_image)
                expanded += [token] * (t * h * w // merge**2)
            else:
                expanded.append(token)
        return expanded, {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"], "grids": grids}

    @torch.no_grad()
    def _logits(self, model: torch.nn.Module, ids: list[int], vision: dict[str, Any]) -> torch.Tensor:
        positions = mrope_positions(ids, vision.get("grids", []), image_token_id=self.image_token_id, merge_size=2)
        inputs = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "position_ids": torch.from_numpy(positions)[:, None, :],
        }
        if vision:
            inputs["pixel_values"] = vision["pixel_values"].to(self.base.dtype)
            inputs["image_grid_thw"] = vision["image_grid_thw"]
        return model(**inputs, use_cache=False).logits[0].float()

    def generate(self, prompts: list[dict], sampling_params: Any, lora_request: LoRARequest | None = None, use_tqdm: bool = True) -> list[RequestOutput]:
        assert not self.asleep, "generate() while asleep: the engine must wake up first"
        params_list = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        STATE.events.append(("generate", len(prompts), None if lora_request is None else lora_request.lora_int_id))
        model = self._model(lora_request)
        outputs = []
        for prompt, params in zip(prompts, params_list):
            ids, vision = self._expand(prompt)
            prompt_logprobs = None
            if params.prompt_logprobs is not None:
                logp = torch.log_softmax(self._logits(model, ids, vision), dim=-1)
                prompt_logprobs = [None] + [{ids[i]: Logprob(float(logp[i - 1, ids[i]]))} for i in range(1, len(ids))]
            generator = torch.Generator().manual_seed(int(params.seed or 0))
            sequence, tokens, logprobs = list(ids), [], []
            for _ in range(params.max_tokens):
                logits = self._logits(model, sequence, vision)[-1]
                raw = torch.log_softmax(logits, dim=-1)  # raw_logprobs: before bias and temperature
                biased = logits.clone()
                for token, bias in (params.logit_bias or {}).items():
                    biased[token] += bias
                if params.temperature == 0.0:
                    token = int(biased.argmax())
                else:
                    token = int(torch.multinomial(torch.softmax(biased / params.temperature, dim=-1), 1, generator=generator))
                tokens.append(token)
                logprobs.append({token: Logprob(float(raw[token]))})
                sequence.append(token)
                if token in (params.stop_token_ids or []):
                    break
            outputs.append(RequestOutput(ids, prompt_logprobs, [CompletionOutput(tokens, logprobs if params.logprobs is not None else None)]))
        return outputs


def _drop_vision_lora(model: torch.nn.Module) -> None:
    """Serve no LoRA on the vision tower (its adapter weights are ignored, silently)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".visual." in f".{name}" and "lora_B" in name:
                param.zero_()


def install(monkeypatch: Any) -> FakeVLLM:
    """Make `import vllm` give this fake for the duration of a test; returns its fresh state."""
    global STATE
    STATE = FakeVLLM()
    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None, is_package=True)
    vllm.__path__ = []
    vllm.LLM, vllm.SamplingParams, vllm.EngineArgs = LLM, SamplingParams, EngineArgs
    lora = types.ModuleType("vllm.lora")
    lora.__spec__ = importlib.machinery.ModuleSpec("vllm.lora", None, is_package=True)
    lora.__path__ = []
    request = types.ModuleType("vllm.lora.request")
    request.__spec__ = importlib.machinery.ModuleSpec("vllm.lora.request", None)
    request.LoRARequest = LoRARequest
    vllm.lora, lora.request = lora, request
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    return STATE


class _SysModules:
    """`install`'s monkeypatch for a process of its own (spawned test workers): sets, never restores."""

    @staticmethod
    def setitem(mapping: dict, name: str, value: Any) -> None:
        mapping[name] = value


def install_in_process() -> FakeVLLM:
    """`install` for a whole process (a spawned worker has no pytest monkeypatch)."""
    return install(_SysModules())
