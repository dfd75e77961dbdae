"""Model inputs built from dialogues: token ids, image patches, 3D (M-RoPE) positions, loss masks.

Why our own input builder instead of the Hugging Face `Qwen2_5_VLProcessor`:

- the full processor needs torchvision (for its video processor and fast image processor), which is
  optional here (not importable beside the CPU torch build); the tokenizer + the image processor
  (the PIL backend when torchvision is missing) are all that images and text need;
- training must reuse the token ids sampled at rollout time verbatim (`DialogueTurn.response_ids`)
  and mark exactly those tokens as targets, which a text-in processor cannot do;
- one code path serves real checkpoints (UI-TARS / Qwen2-VL / Qwen2.5-VL: tokenizer and image
  processor loaded from the checkpoint directory) and the tiny model, so what the tests check is
  what real runs do.

Layout of one dialogue (Qwen chat format): each message is `<|im_start|>{role}\\n{content}<|im_end|>\\n`;
an image is `<|vision_start|>` + n × `<|image_pad|>` + `<|vision_end|>` with
n = grid_t·grid_h·grid_w / merge_size²; generation prompts end with `<|im_start|>assistant\\n`.
Text between special tokens is tokenised as one string (special tokens written in the text, like
the box tokens of the UI-TARS prompt, map to their ids), as the chat template would.

Targets: the tokens of trainable responses plus the `<|im_end|>` that closes them. Responses with
`response_ids` are copied verbatim; if those ids already end with `<|im_end|>` (generation keeps
the stop token it sampled) nothing is added, otherwise (a response cut by `max_new_tokens`, or one
that stopped on `<|endoftext|>`) a closing `<|im_end|>` is added as context only, so the loss
covers exactly the sampled tokens.

Positions: Qwen2-VL / Qwen2.5-VL use 3D rotary positions (temporal, height, width). Text tokens
advance all three by one; the tokens of an image take (start + t, start + row, start + column) on
the merged grid, and the text after it continues at start + max(grid_h, grid_w) / merge_size. We
compute them here (`mrope_positions`), identically for generation and training, so the KV-cache
decoding loop and the training forward see the same positions whatever the transformers version.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from steprl.policy.prompts import Message, PromptTemplate, build_messages
from steprl.types import Dialogue

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"


@dataclass
class EncodedDialogue:
    """One dialogue as model inputs, unpadded.

    `positions` is (3, L) (M-RoPE rows: temporal, height, width); `pixel_values` holds the image
    patches of all images in order ((num_patches, patch_dim) or None), `image_grid_thw` their grids.
    """

    input_ids: list[int]
    target_mask: list[bool]
    positions: np.ndarray
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def next_position(self) -> int:
        """The position of the token that would follow (the first generated token)."""
        return int(self.positions.max()) + 1 if len(self.input_ids) else 0

    @property
    def num_targets(self) -> int:
        return sum(self.target_mask)


def mrope_positions(input_ids: list[int], image_grid_thw: list[tuple[int, int, int]], *, image_token_id: int, merge_size: int) -> np.ndarray:
    """3D rotary positions (3, L) of one unpadded sequence (see the module docstring).

    Worked example (merge 2): ids [a, V, I, I, I, I, E, b] with one image of grid (1, 4, 4) -> the
    image has 2×2 merged tokens. a: 0; V: 1; image tokens start at 2: t = 2, rows 2 2 3 3,
    columns 2 3 2 3; then E continues at 2 + max(2, 2) = 4, b at 5.
    """
    positions = np.zeros((3, len(input_ids)), dtype=np.int64)
    grids = iter(image_grid_thw)
    current, i, n = 0, 0, len(input_ids)
    while i < n:
        if input_ids[i] != image_token_id:
            positions[:, i] = current
            current += 1
            i += 1
            continue
        t, h, w = next(grids)
        gh, gw = h // merge_size, w // merge_size
        count = t * gh * gw
        tt, hh, ww = np.meshgrid(np.arange(t), np.arange(gh), np.arange(gw), indexing="ij")
        positions[0, i : i + count] = current + tt.reshape(-1)
        positions[1, i : i + count] = current + hh.reshape(-1)
        positions[2, i : i + count] = current + ww.reshape(-1)
        current += max(t, gh, gw)
        i += count
    return positions


def model_image_size_for(image_processor: Any, screen_size: tuple[int, int]) -> tuple[int, int]:
    """(w, h) of the image the model sees for a screenshot of `screen_size` (w, h).

    Runs the image processor on a blank screenshot, so the answer is the processor's own resize
    rule (Qwen2-VL smart resize with its min/max pixels), not a re-implementation of it.
    """
    w, h = screen_size
    out = image_processor(images=[np.zeros((h, w, 3), dtype=np.uint8)], return_tensors="pt")
    _, grid_h, grid_w = (int(v) for v in out["image_grid_thw"][0])
    patch = int(getattr(image_processor, "patch_size", 14))
    return grid_w * patch, grid_h * patch


class ImageCache:
    """Processed screenshots (patches and grid) by content, least recently used out first.

    A round encodes each step sample's screenshot several times: for the old log-probs and once per
    PPO pass; hashing the pixels costs about a fifth of processing them. Bounded by the bytes of
    the patches it holds (`max_bytes`; 0 turns it off).
    """

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[bytes, tuple[torch.Tensor, tuple[int, int, int]]] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(image: np.ndarray) -> bytes:
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16)
        digest.update(repr((image.shape, image.dtype.str)).encode())
        return digest.digest()

    def get(self, key: bytes) -> tuple[torch.Tensor, tuple[int, int, int]] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, patches: torch.Tensor, grid: tuple[int, int, int]) -> None:
        size = patches.numel() * patches.element_size()
        if size > self.max_bytes or key in self._entries:
            return
        self._entries[key] = (patches, grid)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (old, _) = self._entries.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()


class DialogueEncoder:
    """Turns dialogues into model inputs with a tokenizer and an image processor (Qwen2-VL style)."""

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        template: PromptTemplate,
        *,
        language: str = "English",
        image_token_id: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.template = template
        self.language = language
        ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (IM_START, IM_END, END_OF_TEXT, VISION_START, VISION_END, IMAGE_PAD)}
        missing = [tok for tok, i in ids.items() if i is None or i == tokenizer.unk_token_id]
        if missing:
            raise ValueError(f"The tokenizer lacks the Qwen chat/vision special tokens {missing}: it is not a Qwen2-VL style tokenizer.")
        self.im_start_id = ids[IM_START]
        self.im_end_id = ids[IM_END]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids[END_OF_TEXT]
        self.vision_start_id = ids[VISION_START]
        self.vision_end_id = ids[VISION_END]
        self.image_token_id = image_token_id if image_token_id is not None else ids[IMAGE_PAD]
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        self.stop_ids = {self.im_end_id, ids[END_OF_TEXT]}
        self._text_cache: dict[str, list[int]] = {}
        self.image_cache = ImageCache()

    def layout_token_ids(self, *extra: int | None) -> tuple[int, ...]:
        """Ids only the input builder may place (chat and image structure); never valid in a response."""
        ids = {self.im_start_id, self.vision_start_id, self.vision_end_id, self.image_token_id}
        ids.update(i for i in extra if i is not None)
        return tuple(sorted(ids))

    # ---- tokens -------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens written in it map to their ids; no BOS/EOS added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _tokenize_cached(self, text: str) -> list[int]:
        # The system + task prompt repeats across steps and rollouts of a task; it is the longest text.
        ids = self._text_cache.get(text)
        if ids is None:
            if len(self._text_cache) > 4096:
                self._text_cache.clear()
            ids = self._text_cache[text] = self.tokenize(text)
        return ids

    def response_ids(self, response: str) -> list[int]:
        """The token ids of a response given as text (without the closing `<|im_end|>`)."""
        return self.tokenize(response)

    # ---- images -------------------------------------------------------------------------------

    def process_images(self, images: list[np.ndarray]) -> tuple[torch.Tensor | None, list[tuple[int, int, int]]]:
        """Patches and grids of `images` ((H, W, 3) uint8 RGB arrays)."""
        if not images:
            return None, []
        for image in images:
            if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
                shape = getattr(image, "shape", type(image).__name__)
                raise ValueError(f"A screenshot must be an (H, W, 3) uint8 RGB array, got {shape}.")
        keys = [ImageCache.key(image) for image in images]
        missing = {key: image for key, image in zip(keys, images) if self.image_cache.get(key) is None}
        fresh = {}
        if missing:
            out = self.image_processor(images=list(missing.values()), return_tensors="pt")
            grids = [tuple(int(v) for v in g) for g in out["image_grid_thw"].tolist()]
            patches = torch.split(out["pixel_values"], [t * h * w for t, h, w in grids])
            for key, chunk, grid in zip(missing, patches, grids):
                fresh[key] = (chunk, grid)
                self.image_cache.put(key, chunk, grid)
        entries = [fresh.get(key) or self.image_cache.get(key) for key in keys]
        return torch.cat([patches for patches, _ in entries]), [grid for _, grid in entries]

    def image_tokens(self, grid: tuple[int, int, int]) -> int:
        """Number of `<|image_pad|>` tokens of an image with patch grid (t, h, w)."""
        t, h, w = grid
        return t * h * w // (self.merge_size**2)

    # ---- dialogues ----------------------------------------------------------------------------

    def encode(self, dialogue: Dialogue, *, add_generation_prompt: bool) -> EncodedDialogue:
        """Encode one dialogue; with `add_generation_prompt` the sequence ends with the assistant header."""
        messages = build_messages(dialogue, self.template, language=self.language)
        images = [part for m in messages for part in m.parts if isinstance(part, np.ndarray)]
        pixel_values, grids = self.process_images(images)
        grid_iter = iter(grids)

        ids: list[int] = []
        mask: list[bool] = []
        pending: list[str] = []

        def flush() -> None:
            if pending:
                text = "".join(pending)
                pending.clear()
                new = self._tokenize_cached(text)
                ids.extend(new)
                mask.extend([False] * len(new))

        def add_ids(new: list[int], trainable: bool) -> None:
            flush()
            ids.extend(new)
            mask.extend([trainable] * len(new))

        for message in messages:
            pending.append(f"{IM_START}{message.role}\n")
            if message.role == "assistant":
                self._add_response(message, add_ids)
                pending.append("\n")
                continue
            for part in message.parts:
                if isinstance(part, np.ndarray):
                    add_ids([self.vision_start_id] + [self.image_token_id] * self.image_tokens(next(grid_iter)) + [self.vision_end_id], False)
                else:
                    pending.append(part)
            pending.append(f"{IM_END}\n")
        if add_generation_prompt:
            pending.append(f"{IM_START}assistant\n")
        flush()
        positions = mrope_positions(ids, grids, image_token_id=self.image_token_id, merge_size=self.merge_size)
        grid_tensor = torch.tensor(grids, dtype=torch.long) if grids else None
        return EncodedDialogue(ids, mask, positions, pixel_values, grid_tensor)

    def _check_response(self, ids: list[int], shown: str) -> None:
        if set(ids) & set(self.layout_token_ids()):
            raise ValueError(
                f"A response holds chat/image layout tokens (<|im_start|>, <|vision_start|>, <|image_pad|>, ...), which would "
                f"break the placement of images: {shown}. Remove them from the response."
            )

    def _add_response(self, message: Message, add_ids: Any) -> None:
        """The response tokens of an assistant message and its closing `<|im_end|>` (see module doc)."""
        if message.response_ids:
            response = list(message.response_ids)
            self._check_response(response, f"ids {response[:12]}")
            add_ids(response, message.trainable)
            if response[-1] != self.im_end_id:
                # Cut by max_new_tokens, or stopped on <|endoftext|>: close the turn in chat
                # format, as context only (the loss covers exactly the sampled tokens).
                add_ids([self.im_end_id], False)
            return
        text = str(message.parts[0]) if message.parts else ""
        ids = self.response_ids(text)
        self._check_response(ids, repr(text[:80]))
        add_ids(ids + [self.im_end_id], message.trainable)

    # ---- batches ------------------------------------------------------------------------------

    def collate(self, encoded: list[EncodedDialogue], *, padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad encoded dialogues into a batch.

        Returns input_ids, attention_mask, target_mask [B, T], position_ids [3, B, T] and, when
        there are images, pixel_values (all images' patches, in batch order) and image_grid_thw.
        Padding uses the pad token, attention 0, no target, position 1.
        """
        if not encoded:
            raise ValueError("collate needs at least one dialogue.")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
        width = max(len(e) for e in encoded)
        batch = len(encoded)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, width), dtype=torch.long)
        targets = torch.zeros((batch, width), dtype=torch.bool)
        positions = torch.ones((3, batch, width), dtype=torch.long)
        for b, e in enumerate(encoded):
            n = len(e)
            span = slice(width - n, width) if padding_side == "left" else slice(0, n)
            input_ids[b, span] = torch.tensor(e.input_ids, dtype=torch.long)
            attention[b, span] = 1
            targets[b, span] = torch.tensor(e.target_mask, dtype=torch.bool)
            positions[:, b, span] = torch.from_numpy(e.positions)
        out = {"input_ids": input_ids, "attention_mask": attention, "target_mask": targets, "position_ids": positions}
        pixel_values = [e.pixel_values for e in encoded if e.pixel_values is not None]
        if pixel_values:
            out["pixel_values"] = torch.cat(pixel_values, dim=0)
            out["image_grid_thw"] = torch.cat([e.image_grid_thw for e in encoded if e.image_grid_thw is not None], dim=0)
        return out
