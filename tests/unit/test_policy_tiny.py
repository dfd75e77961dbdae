"""The tiny checkpoint: tokenizer, image budget, size, determinism."""

from __future__ import annotations

import json

import pytest
import torch

from steprl.policy.tiny import POLICY_META, SPECIAL_TOKENS, build_tiny_checkpoint, build_tokenizer, cached_tiny_checkpoint, pixel_budget

CORPUS = [
    "Click the Save button",
    "Tick Bold and Italic then press Apply",
    "Action: click(start_box='(112,56)')",
    "Action: click(start_box='(200,14)')",
    "Action: type(content='hello world\\n')",
    "Action: finished()",
    "Action: call_user()",
] * 10


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(CORPUS, vocab_size=400)


def test_special_tokens_have_the_first_ids(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(8))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.parametrize(
    "text",
    [
        "Action: click(start_box='(112,56)')",
        "  leading spaces, tabs\tand\nnew lines\n\n",
        "unseen words: Zyxwv ünïcödé 😀 {braces} \\n 'quotes' \"double\"",
        "<|im_start|>user\nhi<|im_end|>\n<|box_start|>(1,2)<|box_end|>",
        "",
    ],
)
def test_decode_encode_round_trips_exactly(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_frequent_phrases_become_few_tokens(tokenizer):
    ids = tokenizer("Action: click(start_box='(112,56)')", add_special_tokens=False)["input_ids"]
    assert len(ids) <= 6  # prefix + 112 + , + 56 + suffix (measured: 5)


def test_special_tokens_in_text_map_to_their_ids_and_decode_strips_them(tokenizer):
    ids = tokenizer("<|box_start|>(1,2)<|box_end|>", add_special_tokens=False)["input_ids"]
    assert ids[0] == 6 and ids[-1] == 7
    assert tokenizer.decode(ids, skip_special_tokens=True) == "(1,2)"


def test_vocab_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size must be at least 264"):
        build_tokenizer(CORPUS, vocab_size=100)


def test_pixel_budget_and_bad_sizes():
    # 224x140 -> max_pixels 224*140 = 31360, min 4 merged tokens = 4*28*28 = 3136
    assert pixel_budget((224, 140)) == (3136, 31360)
    with pytest.raises(ValueError, match="multiples of 28"):
        pixel_budget((100, 50))


def test_checkpoint_is_small_seeded_and_records_its_template(tmp_path):
    from transformers import AutoModelForImageTextToText

    a = build_tiny_checkpoint(tmp_path / "a", CORPUS, vocab_size=400, seed=3)
    b = build_tiny_checkpoint(tmp_path / "b", CORPUS, vocab_size=400, seed=3)
    c = build_tiny_checkpoint(tmp_path / "c", CORPUS, vocab_size=400, seed=4)
    meta = json.loads((a / POLICY_META).read_text())
    assert meta["template"] == "tiny" and meta["model_image_size"] == [224, 140]
    ma, mb, mc = (AutoModelForImageTextToText.from_pretrained(p) for p in (a, b, c))
    assert 0.5e6 <= sum(p.numel() for p in ma.parameters()) <= 2e6
    state_a, state_b, state_c = ma.state_dict(), mb.state_dict(), mc.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not all(torch.equal(state_a[k], state_c[k]) for k in state_a)


def test_model_image_size_must_match_the_screenshot_aspect(tmp_path):
    with pytest.raises(ValueError, match="pick a model_image_size with the screenshot's aspect ratio"):
        build_tiny_checkpoint(tmp_path / "bad", CORPUS, vocab_size=400, image_size=(448, 280), model_image_size=(140, 140))


def test_cached_build_is_reused(tmp_path):
    first = cached_tiny_checkpoint(tmp_path, CORPUS, vocab_size=400)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = cached_tiny_checkpoint(tmp_path, CORPUS, vocab_size=400)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert cached_tiny_checkpoint(tmp_path, CORPUS, vocab_size=400, seed=1) != first
