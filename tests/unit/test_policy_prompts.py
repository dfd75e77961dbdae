"""Prompt templates, box tokens and the message layout built from dialogues."""

from __future__ import annotations

import numpy as np
import pytest

from steprl.policy.prompts import TEMPLATES, add_box_tokens, build_messages, get_template
from steprl.types import Dialogue, DialogueTurn


def shot(value: int = 0) -> np.ndarray:
    return np.full((28, 56, 3), value, dtype=np.uint8)


# ---- templates ----------------------------------------------------------------------------------


def test_computer_template_has_the_uitars_sections_and_box_tokens():
    text = get_template("computer").render_prompt("Open the file", language="English")
    assert text.startswith("You are a GUI agent. You are given a task and your action history, with screenshots.")
    for section in ("## Output Format", "## Action Space", "## Note", "## User Instruction\nOpen the file"):
        assert section in text
    assert "click(start_box='<|box_start|>(x1,y1)<|box_end|>')" in text
    assert "drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')" in text
    assert "finished(content='xxx')" in text
    assert "call_user()" not in text
    assert "- Use English in `Thought` part." in text


def test_call_user_variant_adds_call_user_and_bare_finished():
    text = get_template("computer_call_user").render_prompt("x")
    assert "call_user() # Submit the task and call the user when the task is unsolvable" in text
    assert "\nfinished()\n" in text
    assert "finished(content=" not in text


def test_mobile_template_has_the_mobile_action_space():
    text = get_template("mobile").render_prompt("x")
    for action in ("long_press(start_box=", "open_app(app_name='')", "press_home()", "press_back()"):
        assert action in text
    assert "hotkey(" not in text


def test_tiny_template_is_just_the_instruction():
    template = get_template("tiny")
    assert template.render_prompt("Click OK") == "Click OK"
    assert template.system is None and not template.box_tokens


def test_instruction_with_braces_is_inserted_verbatim():
    assert get_template("tiny").render_prompt("type {language} {x}") == "type {language} {x}"


def test_unknown_template_names_the_known_ones():
    with pytest.raises(ValueError, match="Known templates: computer, computer_call_user, mobile, tiny"):
        get_template("desktop")
    assert set(TEMPLATES) == {"computer", "computer_call_user", "mobile", "tiny"}


# ---- box tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Action: click(start_box='(12,34)')", "Action: click(start_box='<|box_start|>(12,34)<|box_end|>')"),
        (
            "Thought: drag it\nAction: drag(start_box='(1, 2)', end_box='(3,4)')",
            "Thought: drag it\nAction: drag(start_box='<|box_start|>(1, 2)<|box_end|>', end_box='<|box_start|>(3,4)<|box_end|>')",
        ),
        # a four-number box keeps its four numbers
        ("Action: click(start_box='(1,2,3,4)')", "Action: click(start_box='<|box_start|>(1,2,3,4)<|box_end|>')"),
        # the thought is not touched, only the action part
        ("Thought: start_box='(5,6)'\nAction: wait()", "Thought: start_box='(5,6)'\nAction: wait()"),
        # already tokenised: unchanged (idempotent)
        ("Action: click(start_box='<|box_start|>(12,34)<|box_end|>')", "Action: click(start_box='<|box_start|>(12,34)<|box_end|>')"),
        ("no action here (1,2)", "no action here (1,2)"),
        ("Action: type(content='start_box=(1,2)')", "Action: type(content='start_box=(1,2)')"),
    ],
)
def test_add_box_tokens(response, expected):
    assert add_box_tokens(response) == expected
    assert add_box_tokens(add_box_tokens(response)) == expected


# ---- messages -----------------------------------------------------------------------------------


def test_uitars_layout_system_prompt_then_image_and_response_turns():
    dialogue = Dialogue(
        "Save it",
        [
            DialogueTurn(None, "Action: click(start_box='(1,2)')"),  # history kept as text
            DialogueTurn(shot(1), "Action: hotkey(key='ctrl s')"),
            DialogueTurn(shot(2)),  # the turn to generate
        ],
    )
    messages = build_messages(dialogue, get_template("computer"))
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0].parts == ["You are a helpful assistant."]
    assert "## User Instruction\nSave it" in messages[1].parts[0]
    assert messages[2].parts == ["Action: click(start_box='<|box_start|>(1,2)<|box_end|>')"]
    assert len(messages[3].parts) == 1 and messages[3].parts[0][0, 0, 0] == 1
    assert messages[4].parts == ["Action: hotkey(key='ctrl s')"]
    assert messages[5].parts[0][0, 0, 0] == 2


def test_responses_with_ids_are_never_rewritten():
    dialogue = Dialogue("x", [DialogueTurn(None, "Action: click(start_box='(1,2)')", response_ids=(7, 8)), DialogueTurn(shot())])
    messages = build_messages(dialogue, get_template("computer"))
    assert messages[2].parts == ["Action: click(start_box='(1,2)')"] and messages[2].response_ids == (7, 8)


def test_tiny_layout_and_trainable_last_turn():
    dialogue = Dialogue("Click OK", [DialogueTurn(shot(), "Action: finished()", trainable=True)])
    messages = build_messages(dialogue, get_template("tiny"))
    assert [m.role for m in messages] == ["user", "user", "assistant"]
    assert messages[0].parts == ["Click OK"]
    assert messages[2].trainable and messages[2].parts == ["Action: finished()"]


def test_a11y_text_follows_the_current_screenshot():
    dialogue = Dialogue("x", [DialogueTurn(shot(), "a"), DialogueTurn(shot())], a11y="button OK (1,2,3,4)")
    messages = build_messages(dialogue, get_template("computer"))
    assert [m.role for m in messages] == ["system", "user", "user", "assistant", "user"]
    assert len(messages[2].parts) == 1  # only the last turn gets the a11y text
    assert messages[4].parts[1] == "Accessibility tree:\nbutton OK (1,2,3,4)"
