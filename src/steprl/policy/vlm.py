"""VLMPolicy: a Qwen2-VL / Qwen2.5-VL style vision-language model as an RL policy.

Loads any `AutoModelForImageTextToText` checkpoint (UI-TARS-7B-DPO is a Qwen2-VL, UI-TARS-1.5-7B a
Qwen2.5-VL, the tiny model of `tiny.py` a small Qwen2.5-VL) with its tokenizer and image processor,
optionally wraps it in LoRA adapters (peft), and offers what the RL code needs:

- `generate(dialogues)`: batched sampling (left padding) through a generation engine
  (`engines.py`), returning text, token ids and per-token log-probs of π_θ;
- `collate(dialogues)` + `token_logprobs(batch)`: the training path, log π_θ(token_t | tokens_<t)
  on every target token, with gradients, from the same token ids the rollout produced;
- `reference_logprobs(batch)`: log π_ref for the KL term (LoRA: adapters disabled; otherwise a
  frozen copy kept with `keep_reference=True`, which costs a second copy of the weights in memory,
  e.g. ~15 GB for a 7B model in bfloat16);
- saving and loading: `save_adapter` / `load_adapter` (LoRA weights only) and `save_pretrained`
  (a self-contained checkpoint: weights with LoRA merged in, tokenizer, image processor, template);
- `VLMPolicy.from_model(model, tokenizer, image_processor, ...)`: a policy around a model built in
  memory (e.g. random weights of a 7B shape for the GPU smoke test), without a checkpoint on disk;
- engines (`engine="hf"` or `"vllm"`, options of the latter under `vllm`): before every
  training-path forward the policy calls `engine.offload()` (vLLM sleeps and frees its memory);
  the vLLM engine pushes the LoRA adapter itself when the trainable weights changed;

π_θ is the model's next-token distribution with the layout tokens (`<|image_pad|>`,
`<|vision_start|>`, `<|im_start|>`, ...) masked out, in sampling and training alike (engines.py).

Token ids and targets: a generated response keeps its stop token (`<|im_end|>`) and its log-prob;
the training path marks the same ids as targets (see `inputs.py`), so old and new log-probs line
up one to one. Log-probs are always those of π_θ at temperature 1, whatever the sampler used.

Randomness: sampling draws from one `torch.Generator` on the policy's device, seeded with `seed`
at the first `generate` call (and again after `reseed`, or after the policy moved to another
device). Each `generate` call advances it by one draw per decoding step, so the same seed and the
same sequence of calls give the same samples; greedy decoding draws nothing. `generate` runs under
`torch.no_grad()` in eval mode and restores the previous mode afterwards.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steprl.errors import CheckpointError
from steprl.policy.engines import GenerationEngine, SamplingParams, make_engine, mask_logits
from steprl.policy.inputs import DialogueEncoder, EncodedDialogue, model_image_size_for
from steprl.policy.prompts import get_template
from steprl.policy.tiny import POLICY_META
from steprl.types import Dialogue, Generation

COORDS = ("absolute", "relative1000")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: LoRA on the language model's attention and MLP projections by default.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LORA_KEYS = {"r", "alpha", "dropout", "target_modules", "include_vision"}

#: The batch keys the model's forward takes (others, like target_mask, stay out).
_MODEL_KEYS = ("input_ids", "attention_mask", "position_ids", "pixel_values", "image_grid_thw")




@dataclass(frozen=True)
class ModelParts:
    """A model built in memory with its tokenizer and image processor (see `VLMPolicy.from_model`);
    `meta` plays the role of a checkpoint's steprl_policy.json (template, coords, image sizes)."""

    model: nn.Module
    tokenizer: Any
    image_processor: Any
    meta: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Finding checkpoints
# --------------------------------------------------------------------------------------------


def _hub_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with transformers
        return False


def _looks_like_path(name: str) -> bool:
    """Hub names are "model" or "org/model"; anything else with path syntax is a local path."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def resolve_checkpoint(pretrained: str | os.PathLike) -> str:
    """A loadable location for `pretrained`: a checkpoint directory, or a hub name (a cached
    snapshot when offline). Raises CheckpointError with what to do otherwise."""
    name = str(pretrained)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"'{path}' holds no config.json, so it is not a Hugging Face model checkpoint. Point policy.pretrained "
                "at a directory written by save_pretrained (e.g. the tiny model built by "
                "steprl.policy.tiny.build_tiny_checkpoint or scripts/warmstart_tiny.py) or at a hub model name."
            )
        return str(path)
    if path.exists():
        raise CheckpointError(f"'{path}' is a file; policy.pretrained must be a checkpoint directory or a hub model name.")
    if _looks_like_path(name):
        raise CheckpointError(
            f"Checkpoint directory '{path}' does not exist. Check policy.pretrained, or build the tiny checkpoint first "
            "(scripts/warmstart_tiny.py, or steprl.policy.tiny.build_tiny_checkpoint)."
        )
    if _hub_offline():
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(repo_id=name, local_files_only=True)
        except Exception:
            raise CheckpointError(
                f"'{name}' is not a local directory, and the Hugging Face hub is offline (HF_HUB_OFFLINE=1) with no "
                f"cached copy of it. Download it where there is network (`huggingface-cli download {name}`) and set "
                "policy.pretrained to that directory, or unset HF_HUB_OFFLINE."
            ) from None
    return name


def _plain(value: Any) -> Any:
    """Hydra containers (DictConfig / ListConfig) as plain dicts / lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and type(value).__name__ == "ListConfig"):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------


class VLMPolicy(nn.Module):
    """A vision-language GUI policy (see the module docstring). Built from plain keyword arguments.

    Args:
        pretrained: checkpoint directory or hub name.
        template: prompt template name (`prompts.TEMPLATES`); None = the one recorded in the
            checkpoint's steprl_policy.json, else "computer".
        dtype: "float32" | "bfloat16" | "float16".
        device: where the model lives ("cpu", "cuda", "cuda:1", ...).
        attn_implementation: passed to transformers ("sdpa", "eager", "flash_attention_2"); None = default.
        gradient_checkpointing: recompute activations in the backward pass (less memory).
        freeze_vision_tower: no gradients for the vision encoder and its merger.
        lora: None (full fine-tuning) or {r, alpha, dropout, target_modules, include_vision}; adapters
            go on the language model only unless include_vision is true.
        temperature, top_p, max_new_tokens: sampling defaults of `generate`.
        min_pixels, max_pixels: override the image processor's pixel budget (None = checkpoint's).
        seed: seed of the sampling generator (and of the LoRA initialisation).
        engine: generation engine name ("hf").
        keep_reference: without LoRA, keep a frozen copy of the initial weights for `reference_logprobs`.
        language: the `{language}` of UI-TARS prompts.
        max_batch_size: split `generate` calls into chunks of at most this many dialogues (None: one chunk).
        coords: the model's coordinate convention, "absolute" (UI-TARS-1.5 / Qwen2.5-VL: pixels of the
            image it sees) or "relative1000" (UI-TARS / Qwen2-VL: a 0-1000 grid); None = the one recorded
            in the checkpoint, else "absolute". Environments parse the model's actions with it.
        vllm: options of the vLLM engine (`vllm_engine.VLLMSettings`: gpu_memory_utilization,
            enable_sleep_mode, ...); read only when engine="vllm".
    """

    def __init__(
        self,
        pretrained: str | ModelParts,
        template: str | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        attn_implementation: str | None = None,
        gradient_checkpointing: bool = False,
        freeze_vision_tower: bool = False,
        lora: Mapping[str, Any] | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 128,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        seed: int = 0,
        engine: str = "hf",
        keep_reference: bool = False,
        language: str = "English",
        max_batch_size: int | None = None,
        coords: str | None = None,
        vllm: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"policy.dtype must be one of {', '.join(DTYPES)}, got '{dtype}'.")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"policy.top_p must be in (0, 1], got {top_p}.")
        if temperature < 0.0:
            raise ValueError(f"policy.temperature must be >= 0 (0 = greedy), got {temperature}.")
        if max_new_tokens < 1:
            raise ValueError(f"policy.max_new_tokens must be >= 1, got {max_new_tokens}.")
        in_memory = isinstance(pretrained, ModelParts)
        if in_memory and (min_pixels is not None or max_pixels is not None):
            raise ValueError("min_pixels / max_pixels apply when loading a checkpoint; configure the image processor given to from_model.")
        self.pretrained = "<in memory>" if in_memory else str(pretrained)
        self.dtype_name = dtype
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.seed = int(seed)
        self.max_batch_size = max_batch_size
        self.lora_config = self._check_lora(lora)

        source = None if in_memory else resolve_checkpoint(pretrained)
        self.source = source  # the checkpoint directory (or hub name) the weights came from; None when built in memory
        meta = dict(pretrained.meta) if in_memory else self._read_meta(source)
        self.meta = meta  # what the checkpoint recorded (template, image sizes), carried on by save_pretrained
        self.template = get_template(template or meta.get("template") or "computer")
        self.coords = coords or meta.get("coords") or "absolute"
        if self.coords not in COORDS:
            raise ValueError(f"policy.coords must be one of {', '.join(COORDS)}, got '{self.coords}'.")
        if in_memory:
            tokenizer, image_processor, model = pretrained.tokenizer, pretrained.image_processor, pretrained.model.to(DTYPES[dtype])
        else:
            tokenizer, image_processor, model = self._load(source, DTYPES[dtype], attn_implementation, min_pixels, max_pixels)

        if freeze_vision_tower:
            for name, param in model.named_parameters():
                if ".visual." in f".{name}":
                    param.requires_grad_(False)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._reference: list[nn.Module] = []  # a list keeps the copy out of state_dict / parameters()
        if keep_reference and self.lora_config is None:
            reference = copy.deepcopy(model).eval()
            reference.requires_grad_(False)
            self._reference.append(reference)
        self.model = self._wrap_lora(model) if self.lora_config is not None else model
        self.model.to(device)

        self.encoder = DialogueEncoder(
            tokenizer, image_processor, self.template, language=language, image_token_id=getattr(model.config, "image_token_id", None)
        )
        self.stop_ids = frozenset(self.encoder.stop_ids | set(self._config_eos_ids(model)))
        self.disallowed_ids = self.encoder.layout_token_ids(getattr(model.config, "video_token_id", None))
        self._generator: torch.Generator | None = None
        self.engine = self.make_engine(engine, **(_plain(vllm or {}) if engine == "vllm" else {}))

    def make_engine(self, name: str, **options: Any) -> GenerationEngine:
        """A generation engine for this policy ("hf", or "vllm" with `VLLMSettings` options); assign
        it to `policy.engine` to switch engines."""
        if name == "vllm":
            options = {"policy": self, **options}
        return make_engine(name, self._sampling_model, self.encoder, **options)

    @classmethod
    def from_model(cls, model: nn.Module, tokenizer: Any, image_processor: Any, *, meta: Mapping[str, Any] | None = None, **kwargs: Any) -> VLMPolicy:
        """A policy around a Qwen2-VL / Qwen2.5-VL model already built in memory (no checkpoint on
        disk), e.g. random weights of UI-TARS-7B's shape for the GPU smoke test. `meta` holds what a
        checkpoint's steprl_policy.json would (template, coords); `kwargs` are the constructor's
        (dtype converts the model; device moves it)."""
        return cls(ModelParts(model, tokenizer, image_processor, dict(meta or {})), **kwargs)

    # ---- loading ----------------------------------------------------------------------------

    @staticmethod
    def _check_lora(lora: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if lora is None:
            return None
        lora = _plain(lora)
        unknown = set(lora) - _LORA_KEYS
        if unknown:
            raise ValueError(f"Unknown policy.lora keys {sorted(unknown)}; allowed: {sorted(_LORA_KEYS)}.")
        config = {
            "r": int(lora.get("r", 8)),
            "alpha": float(lora.get("alpha", 16)),
            "dropout": float(lora.get("dropout", 0.0)),
            "target_modules": list(lora.get("target_modules") or DEFAULT_LORA_TARGETS),
            "include_vision": bool(lora.get("include_vision", False)),
        }
        if config["r"] < 1:
            raise ValueError(f"policy.lora.r must be >= 1, got {config['r']}.")
        return config

    @staticmethod
    def _read_meta(source: str) -> dict[str, Any]:
        path = Path(source) / POLICY_META
        return json.loads(path.read_text()) if path.is_file() else {}

    def _load(self, source: str, dtype: torch.dtype, attn_implementation: str | None, min_pixels: int | None, max_pixels: int | None):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        overrides = {k: v for k, v in {"min_pixels": min_pixels, "max_pixels": max_pixels}.items() if v is not None}
        model_kwargs: dict[str, Any] = {"dtype": dtype}
        if attn_implementation is not None:
            model_kwargs["attn_implementation"] = attn_implementation
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            image_processor = AutoImageProcessor.from_pretrained(source, **overrides)
            model = AutoModelForImageTextToText.from_pretrained(source, **model_kwargs)
        except (OSError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"Could not load the policy checkpoint '{self.pretrained}' ({type(error).__name__}: {error}). It must be a "
                "Qwen2-VL / Qwen2.5-VL style checkpoint with its tokenizer and image processor (as save_pretrained writes)."
            ) from error
        return tokenizer, image_processor, model

    @staticmethod
    def _config_eos_ids(model: nn.Module) -> list[int]:
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            return []
        return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]

    def _wrap_lora(self, model: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        config = self.lora_config
        names = "|".join(config["target_modules"])
        # peft matches a string target as a regex over the full module name.
        target = rf".*\.({names})$" if config["include_vision"] else rf"^(?!.*\bvisual\b).*\.({names})$"
        lora = LoraConfig(r=config["r"], lora_alpha=config["alpha"], lora_dropout=config["dropout"], target_modules=target, bias="none")
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # peft calls a transformers property that transformers 5 deprecates; nothing for users to act on.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            torch.manual_seed(self.seed)  # LoRA A matrices are drawn at random: make them seeded
            return get_peft_model(model, lora)

    def __getstate__(self) -> dict[str, Any]:
        # The sampling generator is device state: a pickled copy restarts its stream from `seed`.
        state = dict(super().__getstate__())
        state["_generator"] = None
        return state

    def _sampling_model(self) -> nn.Module:
        # A bound method (not a lambda) so the policy stays picklable (spawned DDP workers).
        return self.hf_model

    # ---- properties ---------------------------------------------------------------------------

    @property
    def hf_model(self) -> nn.Module:
        """The Hugging Face model (with LoRA layers injected when LoRA is on)."""
        return self.model.get_base_model() if self.lora_config is not None else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def image_processor(self):
        return self.encoder.image_processor

    def model_image_size(self, screen_size: Sequence[int]) -> tuple[int, int]:
        """(w, h) of the image the model sees for a screenshot of `screen_size` (w, h); the env's
        `model_image_size` knob for absolute (Qwen2.5-VL) coordinates."""
        return model_image_size_for(self.image_processor, (int(screen_size[0]), int(screen_size[1])))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters that get gradients (LoRA: adapter weights only)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    # ---- generation ---------------------------------------------------------------------------

    def reseed(self, seed: int | None = None) -> None:
        """Restart the sampling stream from `seed` (default: the constructor's seed)."""
        if seed is not None:
            self.seed = int(seed)
        self._generator = None

    def _rng(self) -> torch.Generator:
        device = self.device
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def generate(self, dialogues: list[Dialogue], *, greedy: bool = False, temperature: float | None = None) -> list[Generation]:
        """Sample one response per dialogue (batched, left padding).

        Returns text (special tokens stripped), the generated ids (up to and including the stop
        token, when one was sampled) and their log-probs under π_θ at temperature 1.
        `temperature` overrides the policy's default for this call; 0 or `greedy` = argmax.
        """
        if not dialogues:
            return []
        params = SamplingParams(
            greedy=greedy,
            temperature=self.temperature if temperature is None else float(temperature),
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            stop_ids=self.stop_ids,
            disallowed_ids=self.disallowed_ids,
        )
        was_training = self.model.training
        self.model.eval()
        try:
            prompts = [self.encoder.encode(d, add_generation_prompt=True) for d in dialogues]
            chunk = self.max_batch_size or len(prompts)
            sampled = []
            for start in range(0, len(prompts), chunk):
                sampled.extend(self.engine.generate(prompts[start : start + chunk], params, self._rng()))
        finally:
            self.model.train(was_training)
        return [
            Generation(text=self.tokenizer.decode(list(s.token_ids), skip_special_tokens=True), token_ids=s.token_ids, logprobs=s.logprobs)
            for s in sampled
        ]

    # ---- training path ------------------------------------------------------------------------

    def collate(self, dialogues: list[Dialogue]) -> dict[str, torch.Tensor]:
        """A padded training batch (right padding) of `dialogues`.

        Keys: input_ids, attention_mask, target_mask [B, T] (True on trainable responses' tokens,
        their stop token included), position_ids [3, B, T], and pixel_values / image_grid_thw when
        any dialogue shows a screenshot.
        """
        return self.encoder.collate([self.encoder.encode(d, add_generation_prompt=False) for d in dialogues], padding_side="right")

    def token_logprobs(self, batch: Mapping[str, torch.Tensor], *, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """logp[b, t] = log π_θ(token_t | tokens_<t) where target_mask[b, t], 0 elsewhere (with grad).

        With `with_entropy`, also the entropy of π_θ(· | tokens_<t) at those positions (0 elsewhere).
        Training-path forwards first let the engine free the memory it holds (vLLM sleeps).
        """
        self.engine.offload()
        return self._logprobs(self.hf_model, batch, with_entropy)

    @torch.no_grad()
    def trainer_logprobs(self, encoded: EncodedDialogue) -> list[float]:
        """log π_θ of one encoded dialogue's target tokens, without gradient and without offloading
        the engine: the trainer's side of the vLLM engine's weight check."""
        batch = self.encoder.collate([encoded], padding_side="right")
        logp, _ = self._logprobs(self.hf_model, batch, False)
        return logp[0][batch["target_mask"][0].to(logp.device)].float().cpu().tolist()

    @torch.no_grad()
    def reference_logprobs(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """log π_ref on the target tokens: LoRA adapters disabled, or the frozen copy (keep_reference)."""
        self.engine.offload()
        if self.lora_config is not None:
            with self.model.disable_adapter():
                return self._logprobs(self.hf_model, batch, False)[0]
        if not self._reference:
            raise RuntimeError(
                "reference_logprobs needs a reference policy: turn on LoRA (policy.lora, the reference is the base model) "
                "or set policy.keep_reference=true (keeps a frozen copy of the initial weights)."
            )
        reference = self._reference[0]
        if next(reference.parameters()).device != self.device:
            reference.to(self.device)
        return self._logprobs(reference, batch, False)[0]

    def _logprobs(self, model: nn.Module, batch: Mapping[str, torch.Tensor], with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward `model` on the batch; log-probs (and entropies) of the target tokens only.

        The LM head runs on the hidden states that predict a target token only, so memory grows
        with the number of target tokens, not with sequence length × vocabulary.
        """
        device = self.device
        inputs = {k: batch[k].to(device) for k in _MODEL_KEYS if k in batch}
        target = batch["target_mask"].to(device)
        input_ids = inputs["input_ids"]
        rows, cols = target.nonzero(as_tuple=True)
        if cols.numel() and int(cols.min()) == 0:
            raise ValueError("target_mask marks the first token of a sequence, which has no context to predict it from.")
        hidden = model.model(**inputs, use_cache=False).last_hidden_state
        logits = mask_logits(model.get_output_embeddings()(hidden[rows, cols - 1]).float(), self.disallowed_ids)
        log_probs = torch.log_softmax(logits, dim=-1)
        chosen = log_probs.gather(-1, input_ids[rows, cols][:, None]).squeeze(-1)
        logp = torch.zeros(target.shape, dtype=torch.float32, device=device).index_put((rows, cols), chosen)
        entropy = None
        if with_entropy:
            # Masked tokens have p = 0 and log p = -inf: count them as 0 (and keep gradients finite).
            finite = log_probs.masked_fill(torch.isinf(log_probs), 0.0)
            per_token = -(log_probs.exp() * finite).sum(-1)
            entropy = torch.zeros(target.shape, dtype=torch.float32, device=device).index_put((rows, cols), per_token)
        return logp, entropy

    # ---- saving and loading -------------------------------------------------------------------

    def _require_lora(self, what: str) -> None:
        if self.lora_config is None:
            raise RuntimeError(f"{what} needs LoRA adapters; this policy has none (policy.lora is null). Use save_pretrained instead.")

    def save_adapter(self, directory: str | os.PathLike) -> Path:
        """Save the LoRA adapter weights and their configuration (peft format) to `directory`."""
        self._require_lora("save_adapter")
        out = Path(directory)
        self.model.save_pretrained(out)
        return out

    def load_adapter(self, directory: str | os.PathLike) -> None:
        """Load LoRA adapter weights saved by `save_adapter` into this policy's adapters."""
        from peft import PeftConfig, load_peft_weights, set_peft_model_state_dict

        self._require_lora("load_adapter")
        path = Path(directory)
        if not (path / "adapter_config.json").is_file():
            raise CheckpointError(f"'{path}' holds no adapter_config.json: not a directory written by save_adapter.")
        saved = PeftConfig.from_pretrained(str(path))
        current = self.model.peft_config["default"]
        mine = (current.r, float(current.lora_alpha), current.target_modules)
        theirs = (saved.r, float(saved.lora_alpha), saved.target_modules)
        if mine != theirs:
            raise ValueError(f"The adapter in '{path}' has (r, alpha, targets) = {theirs}, this policy {mine}: set policy.lora to match.")
        weights = load_peft_weights(str(path), device=str(self.device))
        result = set_peft_model_state_dict(self.model, weights)
        if result.unexpected_keys:
            raise ValueError(f"The adapter in '{path}' does not fit this model (unexpected keys, e.g. {result.unexpected_keys[:3]}).")

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's weights in plain Hugging Face form, LoRA deltas merged in (out of place)."""
        if self.lora_config is None:
            return {k: v.detach() for k, v in self.hf_model.state_dict().items()}
        from peft.tuners.lora import LoraLayer

        base = self.hf_model
        state = {}
        for key, value in base.state_dict().items():
            if ".lora_" in key:
                continue
            state[key.replace(".base_layer.", ".")] = value.detach()
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer) and "default" in module.lora_A:
                weight = module.get_base_layer().weight
                merged = weight.float() + module.get_delta_weight("default").float()
                state[f"{name}.weight"] = merged.to(weight.dtype)
        return state

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Save a self-contained checkpoint loadable by `VLMPolicy(pretrained=directory)`: the
        weights (LoRA merged in), tokenizer, image processor and the prompt template name."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.hf_model.save_pretrained(out, state_dict=self.export_state_dict())
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)
        meta = dict(self.meta, template=self.template.name, language=self.encoder.language, coords=self.coords)
        (out / POLICY_META).write_text(json.dumps(meta, indent=2) + "\n")
        return out
