"""A tiny Qwen2.5-VL checkpoint built locally: random weights, a tokenizer trained on a corpus.

The tiny policy is the CPU default. It is a real `Qwen2_5_VLForConditionalGeneration` (the same
model class as UI-TARS-1.5), only small, saved with `save_pretrained` next to its tokenizer and
image processor, so `VLMPolicy(pretrained=dir)` loads it by the same code path as a real checkpoint.

- Tokenizer: byte-level BPE trained with the `tokenizers` library on the corpus (the environment's
  vocabulary and expert responses), so frequent phrases ("Action: click(start_box='(") and
  coordinates become few tokens. Digit runs are kept apart from the text around them (a number is
  learned as a unit, never glued to a bracket), everything else may merge. Byte level: any text
  round-trips exactly (decode(encode(text)) == text). Qwen's special tokens are added first.
- Image processor: Qwen2-VL's, with `max_pixels` set so a screenshot of `image_size` is resized to
  `model_image_size` (default 448×280 -> 224×140: 10×16 patches of 14 px, 40 image tokens after the
  2×2 merge). Coordinates the model writes refer to that image; the environment maps them back
  through its `model_image_size` knob.
- Weights: drawn from a seeded generator (`seed`), leaving the global RNG untouched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch

from steprl.policy.inputs import END_OF_TEXT, IM_END, IM_START, IMAGE_PAD, VISION_END, VISION_START, model_image_size_for

#: Qwen's special tokens, in the order they get ids 0..7 in the tiny tokenizer.
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, "<|box_start|>", "<|box_end|>")

#: Text the chat layout always contains (so role names become single tokens).
_CHAT_TEXT = ("system\n", "user\n", "assistant\n", "\n")

#: The file next to a checkpoint that records the steprl prompt template it expects.
POLICY_META = "steprl_policy.json"


def build_tokenizer(corpus: Sequence[str], *, vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer on `corpus`, with Qwen's special tokens (ids 0..7).

    Returns a transformers fast tokenizer with `<|im_end|>` as end-of-sequence and
    `<|endoftext|>` as padding.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256} (special tokens + 256 bytes), got {vocab_size}.")
    texts = [t for t in corpus if t] + list(_CHAT_TEXT)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d+"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )


def pixel_budget(model_image_size: tuple[int, int], factor: int = 28) -> tuple[int, int]:
    """(min_pixels, max_pixels) for Qwen2-VL's smart resize that yield `model_image_size` (w, h)."""
    w, h = model_image_size
    if w % factor or h % factor:
        raise ValueError(f"model_image_size sides must be multiples of {factor} (patch 14 × merge 2), got {model_image_size}.")
    return factor * factor * 4, w * h


def tiny_config(
    tokenizer,
    *,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    vision_hidden_size: int = 64,
    vision_depth: int = 2,
    vision_heads: int = 4,
    vision_intermediate_size: int = 128,
):
    """A small Qwen2.5-VL configuration whose special-token ids match `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    head_dim = hidden_size // num_heads
    if head_dim % 2 or hidden_size % num_heads:
        raise ValueError(f"hidden_size / num_heads must be an even integer, got {hidden_size}/{num_heads}.")
    # M-RoPE splits the head's rotary frequencies between (temporal, height, width): half each
    # for height and width of what remains after a quarter for time.
    half = head_dim // 2
    t_part = half // 4
    h_part = (half - t_part) // 2
    mrope_section = [t_part, h_part, half - t_part - h_part]
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            bos_token_id=ids[END_OF_TEXT],
            eos_token_id=ids[IM_END],
            pad_token_id=ids[END_OF_TEXT],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=vision_hidden_size,
            intermediate_size=vision_intermediate_size,
            num_heads=vision_heads,
            out_hidden_size=hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[vision_depth - 1],
        ),
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[IMAGE_PAD],  # no videos; Qwen configs need an id
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=False,
    )


def build_tiny_checkpoint(
    out_dir: str | Path,
    corpus: Sequence[str],
    *,
    image_size: tuple[int, int] = (448, 280),
    model_image_size: tuple[int, int] = (224, 140),
    vocab_size: int = 1024,
    seed: int = 0,
    template: str = "tiny",
    **model_kwargs,
) -> Path:
    """Build and save a tiny Qwen2.5-VL checkpoint in `out_dir`; returns the directory.

    `image_size` is the screenshot size (w, h) of the environment, `model_image_size` the size the
    model sees it at (multiples of 28; the image processor's pixel budget is set to give exactly
    that). `model_kwargs` go to `tiny_config` (hidden_size, num_layers, ...).
    """
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    try:  # transformers >= 5.x names the PIL backend explicitly
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:  # earlier versions: the default Qwen2-VL image processor is the PIL/numpy one
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)
    min_pixels, max_pixels = pixel_budget(tuple(model_image_size))
    image_processor = ImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    seen = model_image_size_for(image_processor, tuple(image_size))
    if seen != tuple(model_image_size):
        raise ValueError(
            f"A {image_size[0]}x{image_size[1]} screenshot would be resized to {seen[0]}x{seen[1]}, not the requested "
            f"model_image_size {tuple(model_image_size)}: pick a model_image_size with the screenshot's aspect ratio."
        )

    config = tiny_config(tokenizer, **model_kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    im_end, eot = tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    model.generation_config = GenerationConfig(eos_token_id=[im_end, eot], pad_token_id=eot, bos_token_id=eot)

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    meta = {"template": template, "image_size": list(image_size), "model_image_size": list(model_image_size), "seed": seed}
    (out / POLICY_META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def cached_tiny_checkpoint(cache_root: str | Path, corpus: Sequence[str], **kwargs) -> Path:
    """`build_tiny_checkpoint` into `cache_root/tiny-<hash of corpus and kwargs>`, reusing a
    finished build. The build is deterministic, so equal arguments give an equal checkpoint."""
    key = hashlib.sha256(json.dumps([list(corpus), kwargs], sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = Path(cache_root) / f"tiny-{key}"
    if (out / POLICY_META).is_file():  # written last: its presence means the build finished
        return out
    return build_tiny_checkpoint(out, corpus, **kwargs)


def num_parameters(model: torch.nn.Module) -> int:
    """Total number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
