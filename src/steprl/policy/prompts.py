"""UI-TARS prompt templates and the chat messages built from a `Dialogue`.

The template text is the model's contract: UI-TARS checkpoints were trained on these prompts, so
the computer-use and mobile-use templates follow the published wording (header, output format,
action space, notes, user instruction) and write boxes as `<|box_start|>(x,y)<|box_end|>`.

Message layout (the one OSWorld's UI-TARS agent and ARPO use):

1. system: a fixed system line (UI-TARS: "You are a helpful assistant."), when the template has one;
2. user: the template's prompt, holding the task instruction;
3. then per dialogue turn: a user message with that turn's screenshot (when the turn shows one),
   followed by an assistant message with the turn's response. History turns kept as text have no
   user message, so their assistant messages follow each other.

The accessibility text of the current observation (`Dialogue.a11y`), when present, is added to the
user message of the last turn, after its screenshot.

History responses given only as text (no `response_ids`) get their box tokens back
(`add_box_tokens`) when the template says so: the decoded model output has no box tokens (they are
special tokens, stripped by decoding), while the prompts and UI-TARS' training data carry them.
Responses with `response_ids` are never touched: those ids are what the model produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from steprl.types import Dialogue

# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------

_HEADER = (
    "You are a GUI agent. You are given a task and your action history, with screenshots. "
    "You need to perform the next action to complete the task."
)
_OUTPUT_FORMAT = "## Output Format\n```\nThought: ...\nAction: ...\n```"
_NOTE = (
    "## Note\n"
    "- Use {language} in `Thought` part.\n"
    "- Write a small plan and finally summarize your next action (with its target element) in one "
    "sentence in `Thought` part."
)
_INSTRUCTION = "## User Instruction\n{instruction}\n"

_BOX = "<|box_start|>({x},{y})<|box_end|>"
_P1 = _BOX.format(x="x1", y="y1")
_P3 = _BOX.format(x="x3", y="y3")
_ESCAPES = (
    "Use escape characters \\', \\\", and \\n in content part to ensure we can parse the content in "
    "normal python string format."
)

_COMPUTER_ACTIONS = [
    f"click(start_box='{_P1}')",
    f"left_double(start_box='{_P1}')",
    f"right_single(start_box='{_P1}')",
    f"drag(start_box='{_P1}', end_box='{_P3}')",
    "hotkey(key='')",
    f"type(content='xxx') # {_ESCAPES} If you want to submit your input, use \\n at the end of content. ",
    f"scroll(start_box='{_P1}', direction='down or up or right or left')",
    "wait() #Sleep for 5s and take a screenshot to check for any changes.",
]
_FINISHED_WITH_CONTENT = f"finished(content='xxx') # {_ESCAPES}"
# OSWorld's UI-TARS agent: the call_user() variant ends with a bare finished().
_CALL_USER_ENDING = [
    "finished()",
    "call_user() # Submit the task and call the user when the task is unsolvable, or when you need "
    "the user's help.",
]
_MOBILE_ACTIONS = [
    f"click(start_box='{_P1}')",
    f"long_press(start_box='{_P1}')",
    "type(content='') #If you want to submit your input, use \"\\n\" at the end of `content`.",
    f"scroll(start_box='{_P1}', direction='down or up or right or left')",
    "open_app(app_name='')",
    f"drag(start_box='{_P1}', end_box='{_P3}')",
    "press_home()",
    "press_back()",
    _FINISHED_WITH_CONTENT,
]


def _agent_prompt(actions: list[str]) -> str:
    """The UI-TARS agent prompt: header, output format, action space, notes, instruction."""
    action_space = "## Action Space\n\n" + "\n".join(actions) + "\n"
    return "\n\n".join([_HEADER, _OUTPUT_FORMAT, action_space, _NOTE, _INSTRUCTION])


@dataclass(frozen=True)
class PromptTemplate:
    """How a dialogue becomes chat messages.

    `prompt` is the first user message; it may use the placeholders `{instruction}` and
    `{language}`. `system` is the system message (None: no system message). `box_tokens`: re-insert
    `<|box_start|>`/`<|box_end|>` into history responses that are given as text only.
    """

    name: str
    prompt: str
    system: str | None = None
    box_tokens: bool = False
    a11y_header: str = "Accessibility tree:\n"

    def render_prompt(self, instruction: str, language: str = "English") -> str:
        """The first user message for a task instruction."""
        # str.replace, not str.format: instructions may hold braces.
        return self.prompt.replace("{language}", language).replace("{instruction}", instruction)


TEMPLATES: dict[str, PromptTemplate] = {
    # UI-TARS-1.5 computer use (box-token form).
    "computer": PromptTemplate(
        name="computer",
        prompt=_agent_prompt(_COMPUTER_ACTIONS + [_FINISHED_WITH_CONTENT]),
        system="You are a helpful assistant.",
        box_tokens=True,
    ),
    # The variant OSWorld's UI-TARS agent uses: call_user() for infeasible tasks.
    "computer_call_user": PromptTemplate(
        name="computer_call_user",
        prompt=_agent_prompt(_COMPUTER_ACTIONS + _CALL_USER_ENDING),
        system="You are a helpful assistant.",
        box_tokens=True,
    ),
    "mobile": PromptTemplate(
        name="mobile",
        prompt=_agent_prompt(_MOBILE_ACTIONS),
        system="You are a helpful assistant.",
        box_tokens=True,
    ),
    # The tiny from-scratch model generates and reads every token: the instruction alone.
    "tiny": PromptTemplate(name="tiny", prompt="{instruction}", system=None, box_tokens=False, a11y_header=""),
}


def get_template(name: str) -> PromptTemplate:
    """The template registered as `name`, or one clear error listing the known names."""
    if name not in TEMPLATES:
        raise ValueError(f"Unknown prompt template '{name}'. Known templates: {', '.join(sorted(TEMPLATES))}.")
    return TEMPLATES[name]


# --------------------------------------------------------------------------------------------
# Box tokens
# --------------------------------------------------------------------------------------------

# A box argument written as a plain point or box: start_box='(12,34)' or end_box='(1, 2, 3, 4)'.
_PLAIN_BOX = re.compile(r"(start_box|end_box)='(\(\s*\d+(?:\s*,\s*\d+){1,3}\s*\))'")


def add_box_tokens(response: str) -> str:
    """Wrap the box arguments of the Action part in `<|box_start|>`/`<|box_end|>`.

    `Action: click(start_box='(12,34)')` -> `Action: click(start_box='<|box_start|>(12,34)<|box_end|>')`.
    Only the text after the first "Action:" is changed (a thought may quote coordinates), boxes
    that already carry the tokens are left alone, and the rest of the text is kept byte for byte.
    """
    head, sep, action = response.partition("Action:")
    if not sep:
        return response
    return head + sep + _PLAIN_BOX.sub(r"\1='<|box_start|>\2<|box_end|>'", action)


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


@dataclass
class Message:
    """One chat message. `parts` are text strings and screenshots ((H, W, 3) uint8 arrays), in order.

    Assistant messages carry the response: `response_ids` (verbatim token ids, when known) or the
    text in `parts`, and `trainable` (the loss covers it).
    """

    role: str
    parts: list[str | np.ndarray] = field(default_factory=list)
    response_ids: tuple[int, ...] = ()
    trainable: bool = False


def build_messages(dialogue: Dialogue, template: PromptTemplate, *, language: str = "English") -> list[Message]:
    """The chat messages of `dialogue` under `template` (layout in the module docstring).

    The last turn gets an assistant message only when it has a response (a training context);
    a last turn with an empty response is the one to generate.
    """
    messages: list[Message] = []
    if template.system is not None:
        messages.append(Message("system", [template.system]))
    messages.append(Message("user", [template.render_prompt(dialogue.instruction, language)]))
    last = len(dialogue.turns) - 1
    for i, turn in enumerate(dialogue.turns):
        user_parts: list[str | np.ndarray] = []
        if turn.screenshot is not None:
            user_parts.append(turn.screenshot)
        if i == last and dialogue.a11y:
            user_parts.append(template.a11y_header + dialogue.a11y)
        if user_parts:
            messages.append(Message("user", user_parts))
        has_response = bool(turn.response or turn.response_ids or turn.trainable)
        if i < last or has_response:
            text = turn.response
            if template.box_tokens and not turn.response_ids:
                text = add_box_tokens(text)
            messages.append(Message("assistant", [text], response_ids=tuple(turn.response_ids), trainable=turn.trainable))
    return messages
