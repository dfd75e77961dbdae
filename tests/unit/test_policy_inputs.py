"""Model inputs: 3D positions, the token layout of dialogues, target masks, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steprl.policy.inputs import DialogueEncoder, model_image_size_for, mrope_positions
from steprl.policy.prompts import get_template
from steprl.policy.tiny import build_tokenizer, pixel_budget
from steprl.types import Dialogue, DialogueTurn

CORPUS = ["Click the OK button", "Action: click(start_box='(56,28)')", "Action: finished()", "Thought: ok\nAction: wait()"] * 5


@pytest.fixture(scope="module")
def encoder() -> DialogueEncoder:
    from transformers import Qwen2VLImageProcessorPil

    tokenizer = build_tokenizer(CORPUS, vocab_size=320)
    min_pixels, max_pixels = pixel_budget((56, 28))
    return DialogueEncoder(tokenizer, Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels), get_template("tiny"))


def shot(width: int = 112, height: int = 56) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)


def test_mrope_positions_worked_example():
    # ids: a V I I I I E b, one image of patch grid (1, 4, 4) -> 2x2 merged tokens (I = 9).
    # text a: 0, V: 1; image starts at 2: t = 2 2 2 2, rows 2 2 3 3, cols 2 3 2 3;
    # then E at 2 + max(1, 2, 2) = 4 and b at 5.
    positions = mrope_positions([1, 2, 9, 9, 9, 9, 3, 4], [(1, 4, 4)], image_token_id=9, merge_size=2)
    assert positions.tolist() == [
        [0, 1, 2, 2, 2, 2, 4, 5],
        [0, 1, 2, 2, 3, 3, 4, 5],
        [0, 1, 2, 3, 2, 3, 4, 5],
    ]


def test_mrope_positions_wide_image_and_two_images():
    # grid (1, 2, 6) -> 1x3 merged tokens at start 0: rows 0 0 0, cols 0 1 2; next text at 0 + 3 = 3.
    # second image grid (1, 2, 2) -> 1 token at 4; then text at 4 + 1 = 5.
    positions = mrope_positions([9, 9, 9, 1, 9, 2], [(1, 2, 6), (1, 2, 2)], image_token_id=9, merge_size=2)
    assert positions.tolist() == [[0, 0, 0, 3, 4, 5], [0, 0, 0, 3, 4, 5], [0, 1, 2, 3, 4, 5]]


def test_image_is_resized_to_the_budget_and_expanded_to_pad_tokens(encoder):
    # 112x56 screenshot, budget 56x28 -> patch grid (1, 2, 4) -> 2*4/4 = 2 image tokens.
    assert model_image_size_for(encoder.image_processor, (112, 56)) == (56, 28)
    enc = encoder.encode(Dialogue("Click the OK button", [DialogueTurn(shot())]), add_generation_prompt=True)
    assert enc.image_grid_thw.tolist() == [[1, 2, 4]]
    assert enc.pixel_values.shape == (8, 3 * 2 * 14 * 14)
    ids = enc.input_ids
    start = ids.index(encoder.vision_start_id)
    assert ids[start + 1 : start + 4] == [encoder.image_token_id, encoder.image_token_id, encoder.vision_end_id]
    text = encoder.tokenizer.decode(ids)
    assert text == (
        "<|im_start|>user\nClick the OK button<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert not any(enc.target_mask)


def test_text_response_targets_include_the_closing_im_end(encoder):
    response = "Action: click(start_box='(56,28)')"
    enc = encoder.encode(Dialogue("Click the OK button", [DialogueTurn(shot(), response, trainable=True)]), add_generation_prompt=False)
    targets = [i for i, m in zip(enc.input_ids, enc.target_mask) if m]
    assert targets == encoder.tokenize(response) + [encoder.im_end_id]
    assert encoder.tokenizer.decode(enc.input_ids).endswith(f"<|im_start|>assistant\n{response}<|im_end|>\n")


def test_response_ids_are_used_verbatim(encoder):
    ids = tuple(encoder.tokenize("Action: wait()")) + (encoder.im_end_id,)
    dialogue = Dialogue("x", [DialogueTurn(shot(), "ignored text", response_ids=ids, trainable=True)])
    enc = encoder.encode(dialogue, add_generation_prompt=False)
    assert [i for i, m in zip(enc.input_ids, enc.target_mask) if m] == list(ids)
    # the stop token is not doubled: after the sampled <|im_end|> comes only the newline
    last = max(i for i, m in enumerate(enc.target_mask) if m)
    assert enc.input_ids[last] == encoder.im_end_id
    assert encoder.tokenizer.decode(enc.input_ids[last + 1 :]) == "\n"


def test_truncated_response_ids_get_a_context_only_im_end(encoder):
    ids = tuple(encoder.tokenize("Action: cli"))  # cut by max_new_tokens: no stop token
    enc = encoder.encode(Dialogue("x", [DialogueTurn(shot(), response_ids=ids, trainable=True)]), add_generation_prompt=False)
    targets = [i for i, m in zip(enc.input_ids, enc.target_mask) if m]
    assert targets == list(ids)
    last = max(i for i, m in enumerate(enc.target_mask) if m)
    assert enc.input_ids[last + 1] == encoder.im_end_id and not enc.target_mask[last + 1]


def test_only_trainable_turns_are_targets(encoder):
    dialogue = Dialogue(
        "x",
        [DialogueTurn(shot(), "Action: wait()"), DialogueTurn(shot(), "Action: finished()", trainable=True)],
    )
    enc = encoder.encode(dialogue, add_generation_prompt=False)
    assert [i for i, m in zip(enc.input_ids, enc.target_mask) if m] == encoder.tokenize("Action: finished()") + [encoder.im_end_id]
    assert enc.image_grid_thw.shape == (2, 3)


def test_collate_pads_left_for_generation_and_right_for_training(encoder):
    short = encoder.encode(Dialogue("x", [DialogueTurn(None, "Action: wait()", trainable=True)]), add_generation_prompt=False)
    long = encoder.encode(Dialogue("Click the OK button", [DialogueTurn(shot(), "Action: finished()", trainable=True)]), add_generation_prompt=False)
    pad = len(long) - len(short)
    right = encoder.collate([short, long], padding_side="right")
    left = encoder.collate([short, long], padding_side="left")
    assert right["input_ids"].shape == (2, len(long)) and right["position_ids"].shape == (3, 2, len(long))
    assert right["attention_mask"][0].tolist() == [1] * len(short) + [0] * pad
    assert left["attention_mask"][0].tolist() == [0] * pad + [1] * len(short)
    assert right["input_ids"][0, len(short) :].eq(encoder.pad_id).all()
    assert left["target_mask"][0, pad:].tolist() == short.target_mask
    assert torch.equal(left["position_ids"][:, 1], torch.from_numpy(long.positions))
    # only the second dialogue has an image
    assert right["image_grid_thw"].tolist() == [[1, 2, 4]] and right["pixel_values"].shape[0] == 8


def test_bad_screenshot_gets_one_clear_error(encoder):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB array"):
        encoder.encode(Dialogue("x", [DialogueTurn(np.zeros((10, 10)))]), add_generation_prompt=True)


def test_collate_of_nothing_is_an_error(encoder):
    with pytest.raises(ValueError, match="at least one dialogue"):
        encoder.collate([])


def test_image_cache_is_bounded_and_keyed_by_content():
    import numpy as np
    import torch

    from steprl.policy.inputs import ImageCache

    cache = ImageCache(max_bytes=2 * 4 * 10)  # room for two entries of 10 float32 values
    images = [np.full((2, 2, 3), v, np.uint8) for v in range(3)]
    keys = [ImageCache.key(image) for image in images]
    assert ImageCache.key(images[0].copy()) == keys[0] and len(set(keys)) == 3  # same pixels, same key
    for key in keys:
        cache.put(key, torch.zeros(10), (1, 1, 1))
    assert cache.get(keys[0]) is None  # the oldest went out first
    assert cache.get(keys[1]) is not None and cache.get(keys[2]) is not None
    cache.put(ImageCache.key(np.zeros((9, 9, 3), np.uint8)), torch.zeros(100), (1, 1, 1))  # larger than the bound
    assert cache.get(ImageCache.key(np.zeros((9, 9, 3), np.uint8))) is None
