"""Generation engines: the seam between the policy and whatever samples tokens.

`VLMPolicy.generate` encodes dialogues into prompts (`EncodedDialogue`), hands them to an engine
with the sampling settings, and decodes what comes back. An engine only turns prompts into token
ids and their log-probs, so a faster one (vLLM, issue 10) can replace `HFEngine` without touching
any caller: it receives the same prompts (token ids, image patches, positions) and returns the same
`SampledTokens`.

`HFEngine` is a plain KV-cache decoding loop over the Hugging Face model. It is written out (rather
than calling `model.generate`) so that the three things RL needs are explicit:

- the 3D positions of the generated tokens continue those of the prompt exactly as the training
  forward computes them (`EncodedDialogue.next_position`, one step per token);
- log-probs are those of the policy distribution itself, log softmax of the raw logits
  (temperature 1, no top-p), whatever temperature / top-p the sampler uses: PPO ratios and KL
  compare π_θ, not the sampler's distribution;
- π_θ never emits a token that only the input builder may place (`<|image_pad|>`,
  `<|vision_start|>`, `<|vision_end|>`, `<|im_start|>`, ...): their logits are set to −inf by
  `mask_logits`, in sampling and in the training path alike, so a sampled response can always be
  fed back as context (an `<|image_pad|>` in a response would break the image placement);
- sampling draws from one `torch.Generator`: one `torch.multinomial` call over the batch per
  decoding step, so the same seed and the same sequence of calls give the same samples.

Generated ids stop at, and include, the first stop token (`<|im_end|>` or `<|endoftext|>`); its
log-prob is returned too, so training also learns when to stop. A response cut by
`max_new_tokens` has no stop token.

`VLLMEngine` (`vllm_engine.py`, `policy.engine=vllm`) is the other engine: a colocated vLLM that
receives the LoRA adapter after each update. Engines also implement `offload()`, called by the
policy before every training-path forward, so an engine that holds accelerator memory of its own
(vLLM's weights and KV cache) can free it for the update; the HF engine holds none. Two events keep
an engine with weights of its own current: `on_optimizer_step()` (the trainer stepped) and
`sync_weights()` (every rank together, before a round: push what changed); the HF engine samples
from the training weights themselves and ignores both.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from steprl.policy.inputs import DialogueEncoder, EncodedDialogue


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. `greedy` ignores temperature and top_p."""

    greedy: bool
    temperature: float
    top_p: float
    max_new_tokens: int
    stop_ids: frozenset[int]
    disallowed_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SampledTokens:
    """The tokens an engine produced for one prompt and their log-probs under π_θ."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


class GenerationEngine(Protocol):
    """Anything that samples continuations of encoded prompts."""

    def generate(self, prompts: list[EncodedDialogue], params: SamplingParams, generator: torch.Generator) -> list[SampledTokens]: ...

    def offload(self) -> None:
        """Free the accelerator memory the engine holds of its own, before a training step."""
        ...

    def on_optimizer_step(self) -> None:
        """The trainer stepped the optimiser (called on every rank after every step)."""
        ...

    def sync_weights(self) -> bool:
        """Before a round, every rank together: serve the weights being trained; whether it pushed."""
        ...


def sharded_parameters(model: torch.nn.Module) -> bool:
    """True when the model's parameters are sharded across ranks (FSDP FULL_SHARD / SHARD_GRAD_OP,
    FSDP2 DTensors, DeepSpeed ZeRO-3): a forward then runs collectives, which per-rank decoding of
    different lengths would deadlock."""
    for module in model.modules():
        strategy = getattr(module, "sharding_strategy", None)
        if type(module).__name__ == "FullyShardedDataParallel" and getattr(strategy, "name", "") != "NO_SHARD":
            return True
    for param in model.parameters():
        return type(param).__name__ == "DTensor" or hasattr(param, "ds_id")
    return False


def mask_logits(logits: torch.Tensor, disallowed_ids: tuple[int, ...]) -> torch.Tensor:
    """`logits` with the disallowed token ids set to −inf (out of place): they get probability 0."""
    if not disallowed_ids:
        return logits
    return logits.index_fill(-1, torch.tensor(disallowed_ids, device=logits.device), float("-inf"))


def select_tokens(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """Next token per row from raw logits [B, V]: argmax, or a draw from softmax(logits / T)
    restricted to the smallest set of tokens whose probability reaches top_p (nucleus)."""
    if params.greedy or params.temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the tokens ranked above it already reach top_p (the first always stays).
        drop = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= params.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class HFEngine:
    """KV-cache decoding with a Hugging Face Qwen2-VL / Qwen2.5-VL model (see module docstring).

    `model_fn` returns the model to run (the policy's current module, LoRA included), so the
    engine always samples from the weights being trained.
    """

    def __init__(self, model_fn: Callable[[], torch.nn.Module], encoder: DialogueEncoder):
        self.model_fn = model_fn
        self.encoder = encoder
        self._cache_kwarg: str | None = None

    def _cache_name(self, model: torch.nn.Module) -> str:
        # transformers >= 5.x calls the KV cache argument `cache`; earlier versions `past_key_values`.
        if self._cache_kwarg is None:
            params = inspect.signature(model.forward).parameters
            self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        return self._cache_kwarg

    @staticmethod
    def _returned_cache(out) -> object:
        cache = getattr(out, "cache", None)
        return cache if cache is not None else getattr(out, "past_key_values", None)

    def offload(self) -> None:
        """Nothing to free: the HF engine runs the training model itself."""

    def on_optimizer_step(self) -> None:
        """Nothing to push: the HF engine samples from the training weights themselves."""

    def sync_weights(self) -> bool:
        """Nothing to push (see `on_optimizer_step`)."""
        return False

    @torch.no_grad()
    def generate(self, prompts: list[EncodedDialogue], params: SamplingParams, generator: torch.Generator) -> list[SampledTokens]:
        model = self.model_fn()
        if sharded_parameters(model):
            raise RuntimeError(
                "The policy's parameters are sharded across ranks (FSDP FULL_SHARD / SHARD_GRAD_OP or DeepSpeed ZeRO-3): "
                "in-process decoding would deadlock, because ranks decode different numbers of tokens. Use "
                "policy.engine=vllm (an unsharded copy that receives the LoRA adapter), or trainer=ddp, "
                "trainer=deepspeed (stage 2) or trainer.strategy.sharding_strategy=NO_SHARD."
            )
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in self.encoder.collate(prompts, padding_side="left").items()}
        batch.pop("target_mask")
        cache_name = self._cache_name(model)
        out = model(**batch, use_cache=True, logits_to_keep=1)
        cache = self._returned_cache(out)
        logits = mask_logits(out.logits[:, -1, :].float(), params.disallowed_ids)

        size = len(prompts)
        next_position = torch.tensor([p.next_position for p in prompts], device=device)
        attention = batch["attention_mask"]
        stop = torch.tensor(sorted(params.stop_ids), device=device)
        finished = torch.zeros(size, dtype=torch.bool, device=device)
        token_steps: list[torch.Tensor] = []
        logprob_steps: list[torch.Tensor] = []
        alive_steps: list[torch.Tensor] = []
        for step in range(params.max_new_tokens):
            tokens = select_tokens(logits, params, generator)
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
            token_steps.append(tokens)
            logprob_steps.append(logprobs)
            alive_steps.append(~finished)
            finished = finished | torch.isin(tokens, stop)
            if step == params.max_new_tokens - 1 or bool(finished.all()):
                break
            # Finished rows keep decoding a pad token whose output is never read.
            feed = torch.where(finished, torch.full_like(tokens, self.encoder.pad_id), tokens)
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            positions = (next_position + step).view(1, size, 1).expand(3, size, 1)
            out = model(input_ids=feed[:, None], attention_mask=attention, position_ids=positions, use_cache=True, **{cache_name: cache})
            cache = self._returned_cache(out)
            logits = mask_logits(out.logits[:, -1, :].float(), params.disallowed_ids)

        tokens_all = torch.stack(token_steps, dim=1).cpu()
        logprobs_all = torch.stack(logprob_steps, dim=1).cpu()
        alive_all = torch.stack(alive_steps, dim=1).cpu()
        results = []
        for b in range(size):
            keep = alive_all[b]
            results.append(SampledTokens(tuple(tokens_all[b][keep].tolist()), tuple(logprobs_all[b][keep].tolist())))
        return results


def _vllm_engine(model_fn: Callable[[], torch.nn.Module], encoder: DialogueEncoder, **options) -> GenerationEngine:
    # Imported here: vLLM is an optional extra, and nothing on a CPU code path may import it.
    from steprl.policy.vllm_engine import VLLMEngine

    return VLLMEngine(model_fn, encoder, **options)


def _hf_engine(model_fn: Callable[[], torch.nn.Module], encoder: DialogueEncoder, **options) -> GenerationEngine:
    if options:
        raise ValueError(f"The hf engine takes no options; got {sorted(options)}.")
    return HFEngine(model_fn, encoder)


#: Engine name -> factory(model_fn, encoder, **options).
ENGINES: dict[str, Callable[..., GenerationEngine]] = {"hf": _hf_engine, "vllm": _vllm_engine}


def make_engine(name: str, model_fn: Callable[[], torch.nn.Module], encoder: DialogueEncoder, **options) -> GenerationEngine:
    """Build the generation engine registered as `name` (options go to its factory)."""
    if name not in ENGINES:
        raise ValueError(f"Unknown generation engine '{name}'. Known engines: {', '.join(sorted(ENGINES))}.")
    return ENGINES[name](model_fn, encoder, **options)
