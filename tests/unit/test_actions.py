"""UI-TARS text <-> Action: formats, coordinate conventions, round trips, adversarial input."""

from __future__ import annotations

import builtins
import os
import random

import pytest

import steprl

from steprl.actions import (
    MAX_RESPONSE_CHARS,
    ActionParseError,
    action_to_pyautogui,
    action_to_response,
    model_frame,
    normalize_keys,
    parse_response,
)
from steprl.types import ACTION_TYPES, Action

SCREEN = (448, 280)


def parse(text: str, **kwargs) -> Action:
    return parse_response(text, SCREEN, **kwargs)


# -- formats ----------------------------------------------------------------------------------


def test_thought_action_click():
    assert parse("Thought: the Save button is top left.\nAction: click(start_box='(100,50)')") == Action(
        "click", point=(100, 50)
    )


@pytest.mark.parametrize(
    "text",
    [
        "Action: click(start_box='(100,50)')",
        "Action:click(start_box='(100,50)')",
        "Thought: go Action: click(start_box='(100,50)')",
        "Reflection: that failed.\nAction_Summary: click Save.\nAction: click(start_box='(100,50)')",
        "Action_Summary: click Save.\nAction: click(start_box='(100,50)')",
        "Action: click(start_box='<|box_start|>(100,50)<|box_end|>')",
        "Action: click(point='<point>100 50</point>')",
        "Action: click(start_box='[100, 50]')",
        'Action: click(start_box="(100,50)")',
        "Action: click(start_box=(100, 50))",
        "Action: left_single(start_box='(100,50)')",
        # a box (x1,y1,x2,y2) means its centre: ((90+110)/2, (40+60)/2) = (100, 50)
        "Action: click(start_box='(90,40,110,60)')",
        "Action: click(start_box='<bbox>90 40 110 60</bbox>')",
        # floats: 99.6 -> 100 (round half up), 49.5 -> 50
        "Action: click(start_box='(99.6,49.5)')",
    ],
)
def test_click_formats(text):
    assert parse(text) == Action("click", point=(100, 50))


def test_end_of_turn_tokens_after_the_action_are_ignored():
    for end in ("<|im_end|>", "<|endoftext|>", "[EOS]", "</s>"):
        assert parse(f"Action: click(start_box='(100,50)'){end}") == Action("click", point=(100, 50))


def test_several_actions_take_the_first():
    """parse_response keeps its contract (the first action); parse_actions returns them all."""
    text = "Thought: two things\nAction: click(start_box='(10,20)')\n\ntype(content='hello')"
    assert parse(text) == Action("click", point=(10, 20))
    # what follows the first action is ignored, never run
    assert parse("Action: type(content='x')\n__import__('steprl').PWNED = 1") == Action("type", text="x")
    assert not hasattr(steprl, "PWNED")


def test_every_action_type_parses():
    cases = {
        "click(start_box='(1,2)')": Action("click", point=(1, 2)),
        "left_double(start_box='(1,2)')": Action("left_double", point=(1, 2)),
        "right_single(start_box='(1,2)')": Action("right_single", point=(1, 2)),
        "hover(start_box='(1,2)')": Action("hover", point=(1, 2)),
        "drag(start_box='(1,2)', end_box='(30,40)')": Action("drag", point=(1, 2), end_point=(30, 40)),
        "hotkey(key='Ctrl+ArrowLeft')": Action("hotkey", text="ctrl left"),
        "hotkey(hotkey='ctrl c')": Action("hotkey", text="ctrl c"),
        "press(key='Return')": Action("press", text="enter"),
        "keydown(key='shift')": Action("keydown", text="shift"),
        "keyup(key='shift')": Action("keyup", text="shift"),
        "release(key='shift')": Action("keyup", text="shift"),
        "type(content='hello\\n')": Action("type", text="hello\n"),
        "scroll(start_box='(5,6)', direction='down')": Action("scroll", point=(5, 6), direction="down"),
        "scroll(direction='LEFT')": Action("scroll", direction="left"),
        # v1 mobile two-point scroll: a swipe toward the top (dy < 0) scrolls the content down
        "scroll(start_box='(100,200)', end_box='(100,50)')": Action("scroll", point=(100, 200), direction="down"),
        "scroll(start_box='(100,50)', end_box='(300,60)')": Action("scroll", point=(100, 50), direction="left"),
        "wait()": Action("wait"),
        "finished()": Action("finished"),
        "finished(content='42 apples')": Action("finished", text="42 apples"),
        "call_user()": Action("call_user"),
        "long_press(start_box='(1,2)')": Action("long_press", point=(1, 2)),
        "long_press(start_box='(1,2)', time='2')": Action("long_press", point=(1, 2)),
        "open_app(app_name='Settings')": Action("open_app", text="Settings"),
        "press_home()": Action("press_home"),
        "press_back()": Action("press_back"),
    }
    seen = set()
    for call, expected in cases.items():
        assert parse("Action: " + call) == expected, call
        seen.add(expected.type)
    assert seen == set(ACTION_TYPES)


def test_type_content_escapes_and_raw_newlines():
    assert parse("Action: type(content='it\\'s \"ok\"\\n')").text == 'it\'s "ok"\n'
    assert parse("Action: type(content='line one\nline two')").text == "line one\nline two"  # raw newline
    assert parse("Action: type(content='it's fine')").text == "it's fine"  # unescaped quote, repaired
    assert parse("Action: type(content='don't won't')\n\nclick(start_box='(1,2)')").text == "don't won't"


def test_normalize_keys():
    assert normalize_keys("Ctrl+Shift+ArrowUp") == "ctrl shift up"
    assert normalize_keys("control  return") == "ctrl enter"
    assert normalize_keys("ctrl +") == "ctrl +"
    assert normalize_keys("Escape") == "esc"


# -- coordinates --------------------------------------------------------------------------------


def test_relative1000_centre():
    # 500 · 448 / 1000 = 224 ; 500 · 280 / 1000 = 140
    assert parse("Action: click(start_box='(500,500)')", coords="relative1000").point == (224, 140)


def test_relative1000_edges_round_and_clamp():
    # 1 · 448/1000 = 0.448 -> 0 ; 2 · 448/1000 = 0.896 -> 1 ; 1000 · 448/1000 = 448 -> clamped to 447
    assert parse("Action: click(start_box='(1,1)')", coords="relative1000").point == (0, 0)
    assert parse("Action: click(start_box='(2,2)')", coords="relative1000").point == (1, 1)
    assert parse("Action: click(start_box='(1000,1000)')", coords="relative1000").point == (447, 279)


def test_absolute_identity_for_multiples_of_28():
    # smart_resize(280, 448) = (280, 448): 448 = 16·28, 280 = 10·28, 125,440 px within [78,400, 12,845,056]
    assert model_frame(SCREEN) == (448, 280)
    assert parse("Action: click(start_box='(123,45)')").point == (123, 45)


def test_absolute_with_a_smaller_model_image():
    # the model saw 224x140: x = 100 · 448/224 = 200, y = 50 · 280/140 = 100
    assert parse("Action: click(start_box='(100,50)')", image_size=(224, 140)).point == (200, 100)


def test_absolute_smart_resize_of_a_full_hd_screen():
    # smart_resize(1080, 1920): 1080/28 = 38.57 -> 39·28 = 1092 ; 1920/28 = 68.57 -> 69·28 = 1932
    assert model_frame((1920, 1080)) == (1932, 1092)
    # x = 966 · 1920/1932 = 960 ; y = 546 · 1080/1092 = 540
    assert parse_response("Action: click(start_box='(966,546)')", (1920, 1080)).point == (960, 540)


def test_bad_coordinate_config_is_a_value_error():
    with pytest.raises(ValueError, match="coords must be one of"):
        parse("Action: wait()", coords="pixels")
    with pytest.raises(ValueError, match="image_size must be positive"):
        parse("Action: wait()", image_size=(0, 10))


# -- round trips ---------------------------------------------------------------------------------

ROUND_TRIP_ACTIONS = [
    Action("click", point=(0, 0)),
    Action("click", point=(447, 279)),
    Action("left_double", point=(224, 140)),
    Action("right_single", point=(17, 233)),
    Action("hover", point=(300, 12)),
    Action("long_press", point=(99, 101)),
    Action("drag", point=(51, 63), end_point=(340, 200)),
    Action("hotkey", text="ctrl shift s"),
    Action("press", text="enter"),
    Action("keydown", text="shift"),
    Action("keyup", text="shift"),
    Action("type", text="it's a \"test\"\\ with\nnew lines\n"),
    Action("scroll", point=(150, 150), direction="down"),
    Action("scroll", point=(150, 150), direction="left"),
    Action("scroll", direction="up"),
    Action("wait"),
    Action("finished"),
    Action("finished", text="the answer is 'seven'"),
    Action("call_user"),
    Action("open_app", text="Settings"),
    Action("press_home"),
    Action("press_back"),
]


def test_round_trip_covers_every_action_type():
    assert {action.type for action in ROUND_TRIP_ACTIONS} == set(ACTION_TYPES)


@pytest.mark.parametrize("coords", ["absolute", "relative1000"])
@pytest.mark.parametrize("thought", [None, "I click it."])
@pytest.mark.parametrize("action", ROUND_TRIP_ACTIONS, ids=lambda a: a.type)
def test_round_trip_exact(action, coords, thought):
    # both frames are at least as fine as the screen (448x280 or 1000x1000): exact
    text = action_to_response(action, SCREEN, coords=coords, thought=thought)
    assert parse_response(text, SCREEN, coords=coords) == action
    assert text.startswith("Thought: ") == (thought is not None)


@pytest.mark.parametrize("action", [a for a in ROUND_TRIP_ACTIONS if a.point is not None], ids=lambda a: a.type)
def test_round_trip_with_a_coarser_model_image(action):
    # half-size image: one model unit is 2 screen pixels, so points come back within 1 pixel
    text = action_to_response(action, SCREEN, image_size=(224, 140))
    parsed = parse_response(text, SCREEN, image_size=(224, 140))
    assert parsed.type == action.type
    for got, want in ((parsed.point, action.point), (parsed.end_point, action.end_point)):
        if want is not None:
            assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1


# -- pyautogui --------------------------------------------------------------------------------------


def test_action_to_pyautogui():
    assert action_to_pyautogui(Action("click", point=(3, 4))) == "pyautogui.click(3, 4, button='left')"
    assert action_to_pyautogui(Action("left_double", point=(3, 4))) == "pyautogui.doubleClick(3, 4, button='left')"
    assert action_to_pyautogui(Action("right_single", point=(3, 4))) == "pyautogui.click(3, 4, button='right')"
    assert action_to_pyautogui(Action("drag", point=(1, 2), end_point=(5, 6))) == (
        "pyautogui.moveTo(1, 2)\npyautogui.dragTo(5, 6, duration=0.5, button='left')"
    )
    assert action_to_pyautogui(Action("hotkey", text="ctrl s")) == "pyautogui.hotkey('ctrl', 's')"
    assert action_to_pyautogui(Action("type", text="\n")) == "import base64, pyperclip\npyautogui.press('enter')"
    assert action_to_pyautogui(Action("scroll", point=(7, 8), direction="down")) == "pyautogui.scroll(-5, x=7, y=8)"
    assert action_to_pyautogui(Action("scroll", direction="up")) == "pyautogui.scroll(5)"
    assert action_to_pyautogui(Action("scroll", point=(7, 8), direction="left")) == "pyautogui.hscroll(-5, x=7, y=8)"
    assert action_to_pyautogui(Action("scroll", direction="right")) == "pyautogui.hscroll(5)"
    assert action_to_pyautogui(Action("press", text="enter")) == "pyautogui.press('enter')"
    assert action_to_pyautogui(Action("keydown", text="shift")) == "pyautogui.keyDown('shift')"
    assert action_to_pyautogui(Action("keyup", text="shift")) == "pyautogui.keyUp('shift')"
    assert action_to_pyautogui(Action("wait")) == "WAIT"
    assert action_to_pyautogui(Action("finished", text="x")) == "DONE"
    assert action_to_pyautogui(Action("call_user")) == "FAIL"
    with pytest.raises(ActionParseError, match="mobile action"):
        action_to_pyautogui(Action("press_home"))


def test_pyautogui_code_quotes_hostile_text_safely():
    text = "'); import os; os.system('x'); ('"
    code = action_to_pyautogui(Action("type", text=text))
    assert "os.system" not in code  # the text travels encoded, never as code
    assert typed_in_vm(code) == text


# -- malformed and adversarial output ---------------------------------------------------------------


def adversarial_corpus(sentinel: str) -> list[str]:
    touch = f"touch {sentinel}"
    return [
        "",
        "   \n\t  ",
        "Thought: I should click the button.",
        "Action:",
        "Action:   ",
        "Action: click(",
        "Action: click(start_box='(100,200)'",
        "Action: click(start_box='(100,200)'\n",
        "Action: click(start_box='(100,200",
        "Action: click",
        "Action: click[start_box='(1,2)']",
        "Action: 42",
        "Action: x = 1",
        "Action: click()",
        "Action: click(start_box='(100)')",
        "Action: click(start_box='(1,2,3)')",
        "Action: click(start_box='(1,2,3,4,5)')",
        "Action: click(start_box='()')",
        "Action: click(start_box='(1,2)', end_box='(3,4)')",
        "Action: click(start_box='(1,2)', start_box='(3,4)')",
        "Action: click(start_box='(1,2)', colour='red')",
        "Action: drag(start_box='(1,2)')",
        "Action: click('(1,2)')",
        "Action: click(start_box='(5000,10)')",
        "Action: click(start_box='(-1,10)')",
        "Action: click(start_box='(449,10)')",
        "Action: click(start_box='(10,281)')",
        "Action: click(start_box='(0,0,500,500)')",
        "Action: click(start_box='(nan,nan)')",
        "Action: click(start_box='(NaN,1)')",
        "Action: click(start_box='(inf,1)')",
        "Action: click(start_box=(1e999, 2))",
        "Action: click(start_box='(1e3,2)')",
        "Action: click(start_box='(abc,def)')",
        "Action: click(start_box='(0x10,2)')",
        "Action: click(start_box=True)",
        "Action: click(start_box=b'(1,2)')",
        "Action: click(start_box=None)",
        "Action: click(start_box='(1,2)', **{'a': 1})",
        "Action: teleport(start_box='(1,2)')",
        "Action: Click(start_box='(1,2)')",
        "Action: click(click(start_box='(1,2)'))",
        "Action: click(start_box=click(start_box='(1,2)'))",
        "Action: click(start_box='(1,2)'.upper())",
        "Action: click(start_box=[1, 'x'])",
        "Action: click(start_box=(1, 2) + (3, 4))",
        "Action: type(content='unbalanced)",
        'Action: type(content="it\'s)',
        "Action: type(content='')",
        "Action: type(content=1)",
        "Action: type()",
        "Action: hotkey(key='')",
        "Action: hotkey(key='ctrl banana')",
        "Action: press(key='ctrl c')",
        "Action: scroll(start_box='(1,2)', direction='sideways')",
        "Action: scroll(start_box='(1,2)')",
        "Action: scroll(start_box='(1,2)', end_box='(1,2)')",
        "Action: finished(content=1)",
        "Action: open_app(app_name='')",
        "Action: long_press(start_box='(1,2)', time='-1')",
        "Action: wait(5)",
        "Action: " + "(" * 300 + ")" * 300,
        "Action: click" + "(" * 5000,
        "Action: " + "A" * (MAX_RESPONSE_CHARS + 1),
        "Thought: " + "x" * 100_000 + "\nAction: click(start_box='(1,2)')",
        "\x00Action: click(start_box='(1,2)')",
        # code injection: none of these may run anything
        f"Action: __import__('os').system('{touch}')",
        f"Action: os.system('{touch}')",
        f"Action: eval(\"__import__('os').system('{touch}')\")",
        f"Action: exec(\"import os; os.system('{touch}')\")",
        f"Action: type(content=f'{{__import__(\"os\").system(\"{touch}\")}}')",
        f"Action: click(start_box=__import__('os').system('{touch}'))",
        f"Action: (lambda: __import__('os').system('{touch}'))()",
        f"Action: [__import__('os').system('{touch}')]",
        f"Action: click(start_box='(1,2)').__class__.__base__.__subclasses__()",
        "Action: click(start_box=open('/etc/passwd').read())",
        f"Action: type(content=__builtins__.__import__('os').system('{touch}'))",
        f"Action: drag(start_box='(1,2)', end_box=eval(\"__import__('os').system('{touch}')\"))",
        "Action: setattr(__import__('steprl'), 'PWNED', 1)",
        "Action: click(start_box=setattr(__import__('steprl'), 'PWNED', 1))",
    ]


def test_adversarial_corpus_raises_action_parse_error(tmp_path, monkeypatch):
    sentinel = tmp_path / "sentinel"
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(("os.system", a)) or 0)
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: calls.append(("eval", a)))
    monkeypatch.setattr(builtins, "exec", lambda *a, **k: calls.append(("exec", a)))
    for text in adversarial_corpus(str(sentinel)):
        with pytest.raises(ActionParseError) as error:
            parse(text)
        assert error.value.reason, text  # a human-readable reason
        assert len(str(error.value)) < 400, "error messages stay short even for huge inputs"
    assert not sentinel.exists()
    assert calls == []
    assert not hasattr(steprl, "PWNED")


def test_huge_input_is_refused_with_the_limit_in_the_message():
    with pytest.raises(ActionParseError, match=f"limit is {MAX_RESPONSE_CHARS}"):
        parse("Action: wait()" + " " * MAX_RESPONSE_CHARS)


def test_injection_messages_say_why():
    with pytest.raises(ActionParseError, match="attribute access"):
        parse("Action: os.system('ls')")
    with pytest.raises(ActionParseError, match="unknown action type 'eval'"):
        parse("Action: eval('1')")
    with pytest.raises(ActionParseError, match="f-strings"):
        parse("Action: type(content=f'{x}')")
    with pytest.raises(ActionParseError, match="nested calls"):
        parse("Action: click(start_box=foo())")
    with pytest.raises(ActionParseError, match="outside the screen"):
        parse("Action: click(start_box='(5000,10)')")
    with pytest.raises(ActionParseError, match="non-numeric"):
        parse("Action: click(start_box='(nan,1)')")


def test_every_truncation_of_a_valid_response_is_handled():
    """Cut a valid response at every position: each prefix parses or raises ActionParseError."""
    full = "Thought: fill it in.\nAction: drag(start_box='<|box_start|>(10,20)<|box_end|>', end_box='(300,200)')"
    for cut in range(len(full) + 1):
        try:
            parse(full[:cut])
        except ActionParseError:
            pass
    assert parse(full) == Action("drag", point=(10, 20), end_point=(300, 200))


def test_random_fuzz_never_raises_anything_else():
    rng = random.Random(1234)
    pieces = [
        "Action:", "Thought:", " ", "\n", "click", "type", "drag", "scroll", "hotkey", "(", ")", "[", "]",
        "'", '"', "\\", ",", "=", "start_box", "end_box", "content", "key", "direction", "down", "1", "23",
        "-", ".", "e", "nan", "<point>", "</point>", "<|box_start|>", "__import__", "os", ".system", "{", "}",
        "f'", "lambda", ":", "*", "é", "\x00", "ctrl", "+",
    ]  # fmt: skip
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        try:
            parse(text)
        except ActionParseError:
            pass


# -- issue 15 item 9 / issue 16 item 3: real outputs the parser must accept or refuse cleanly ---------


def test_the_word_action_inside_the_thought_is_skipped():
    text = "Thought: The next Action: click the Save button.\nAction: click(start_box='(10,20)')"
    assert parse(text) == Action("click", point=(10, 20))
    # also when the Thought quotes an earlier action that no longer parses as the whole section
    text = "Thought: Action: click(start_box='(1,1)') did nothing.\nAction: hotkey(key='ctrl s')"
    assert parse(text) == Action("hotkey", text="ctrl s")
    # a type() content that holds "Action:" is still typed as written
    assert parse("Action: type(content='Action: done')") == Action("type", text="Action: done")


def test_a_trailing_comment_after_the_call_is_ignored():
    assert parse("Action: click(start_box='(10,20)')  # the OK button") == Action("click", point=(10, 20))
    assert parse("Action: type(content='it's')  # with a quote") == Action("type", text="it's")
    with pytest.raises(ActionParseError, match="unexpected text"):
        parse("Action: click(start_box='(10,20)') and then save")


def test_parse_actions_returns_every_action_up_to_a_terminal_one():
    from steprl.actions import MAX_ACTIONS, parse_actions

    text = "Thought: copy, then paste\nAction: hotkey(key='ctrl c')\n\nhotkey(key='ctrl v')  # paste\n\nfinished()\n\nclick(start_box='(1,1)')"
    assert parse_actions(text, SCREEN) == [Action("hotkey", text="ctrl c"), Action("hotkey", text="ctrl v"), Action("finished")]
    # a later line that is not a valid call ends the list; nothing after it is read
    assert parse_actions("Action: wait()\nThat is all.\nclick(start_box='(1,1)')", SCREEN) == [Action("wait")]
    many = "Action: " + "\n".join(["wait()"] * (MAX_ACTIONS + 1))
    with pytest.raises(ActionParseError, match=f"more than {MAX_ACTIONS} actions"):
        parse_actions(many, SCREEN)


@pytest.mark.parametrize(
    "call",
    [
        "click(start_box=(" + "9" * 400 + ",5))",  # an unquoted tuple: OverflowError before the fix
        "click(start_box=" + "9" * 400 + ")",
        "long_press(start_box='(5,5)', time=" + "9" * 400 + ")",
        "scroll(start_box=[" + "9" * 400 + ", 1], direction='down')",
    ],
)
def test_a_400_digit_integer_is_an_invalid_action_not_a_crash(call):
    with pytest.raises(ActionParseError):
        parse(f"Thought: big\nAction: {call}")


def test_a_400_digit_integer_costs_one_turn_in_minidesk():
    from steprl.envs import make

    env = make("minidesk")
    task = env.tasks("train")[0]
    env.reset(task)
    result = env.step("Action: click(start_box=(" + "9" * 400 + ",5))")
    assert result.info["action_valid"] is False and "out of range" in result.info["error"]
    assert result.info["steps"] == 1 and not result.done


# -- issue 15 item 4: type() reaches the VM byte for byte ----------------------------------------------


class _Recorder:
    """Stand-ins for pyautogui / pyperclip / time inside the VM: a keyboard that inserts the
    clipboard on ctrl+v and a newline on Enter, and refuses everything else."""

    def __init__(self) -> None:
        self.clipboard, self.typed = "", ""

    # pyperclip
    def copy(self, text: str) -> None:
        assert isinstance(text, str)
        self.clipboard = text

    # pyautogui
    def hotkey(self, *keys: str) -> None:
        assert keys == ("ctrl", "v"), keys
        self.typed += self.clipboard

    def press(self, key: str) -> None:
        assert key == "enter", key
        self.typed += "\n"

    def sleep(self, seconds: float) -> None:
        assert 0 <= seconds < 1


def typed_in_vm(code: str) -> str:
    """Run `code` as OSWorld's VM server runs a command (pyautogui and time imported) against the
    recording stand-ins, and return what reached the focused window."""
    import sys
    import types

    recorder = _Recorder()
    fake_clip = types.ModuleType("pyperclip")
    fake_clip.copy = recorder.copy  # type: ignore[attr-defined]
    saved = sys.modules.get("pyperclip")
    sys.modules["pyperclip"] = fake_clip
    try:
        exec(code, {"pyautogui": recorder, "time": recorder})  # noqa: S102 - our own generated code
    finally:
        if saved is None:
            del sys.modules["pyperclip"]
        else:
            sys.modules["pyperclip"] = saved
    return recorder.typed


TYPED_TEXTS = [
    "a < b > c",
    "it's \"quoted\" and 'single'",
    "C:\\path\\to\\file \\n not a newline",
    "line one\nline two\n",
    "café naïve Ærøskøbing Straße",
    "日本語のテキスト 中文 العربية",
    "emoji 🎉 and tab\tinside",
    "pyautogui.typewrite('<x>')",
]


@pytest.mark.parametrize("text", TYPED_TEXTS)
def test_typed_text_reaches_the_vm_intact(text):
    code = action_to_pyautogui(parse(f"Action: type(content={text!r})"))
    assert typed_in_vm(code) == text
