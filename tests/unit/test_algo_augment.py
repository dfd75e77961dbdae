"""SL-GRPO: which steps are augmented and the groups built from alternatives (docs/algorithm.md §4)."""

from __future__ import annotations

import numpy as np
import pytest

from steprl.algo.augment import augmentation_samples, low_success_rule, num_alternatives, select_augmentation_steps
from steprl.algo.samples import SampleOrigin
from steprl.algo.success_rate import SuccessRateRecorder
from steprl.types import Action, Dialogue, DialogueTurn, Generation, Observation, Task, TrainingSample, Trajectory, Turn

SQRT3_OVER_2 = 0.8660254  # (1 − 0.5) / sqrt(1/3): group rewards [1, 1, 0, 0], mean 0.5, sample std sqrt(1/3)


def step(task_id: str = "a", advantage: float = 0.9, source: str = "step") -> TrainingSample:
    history = DialogueTurn(None, response="Action: click(start_box='(5,5)')")
    current = DialogueTurn(np.zeros((2, 2, 3), np.uint8), response="Action: click(start_box='(100,100)')", response_ids=(1, 2), trainable=True)
    dialogue = Dialogue(instruction="press the button", turns=[history, current], a11y="button")
    return TrainingSample(dialogue=dialogue, advantage=advantage, task_id=task_id, source=source, group=task_id)


@pytest.mark.parametrize(("n", "k"), [(8, 3), (4, 1), (5, 1), (16, 7), (3, 0), (2, 0), (1, 0), (0, 0)])
def test_num_alternatives(n, k):
    assert num_alternatives(n) == k  # N/2 − 1, integer, at least 0


def origin(task_id: str = "a", score: float = 1.0, action: Action | None = Action("click", (100, 100)), valid: bool = True) -> SampleOrigin:
    turn = Turn(Observation(np.zeros((2, 2, 3), np.uint8), "press the button"), "Action: click(start_box='(100,100)')", action=action, action_valid=valid)
    return SampleOrigin(Trajectory(Task(task_id, "f", "press the button"), [turn], score=score), 0)


def test_select_low_success_steps_of_successful_trajectories_only():
    recorder = SuccessRateRecorder(prior={"a": 0.1, "b": 0.2, "c": 0.5})
    pairs = [
        (step("a"), origin("a")),  # ŝ = 0.1 ≤ 0.2, success: yes
        (step("b", 0.8), origin("b")),  # ŝ = s_low exactly: yes (≤)
        (step("c", 0.5), origin("c")),  # ŝ = 0.5: no
        (step("d"), origin("d")),  # never seen: no
        (step("a", 0.9, source="trajectory"), SampleOrigin(origin("a").trajectory, None)),  # not a step sample
        (step("a", 0.4), origin("a", score=0.5)),  # partial credit: a FAILED trajectory with A > 0 (w/o SR-Adv): no
        (step("a", 0.9), origin("a", action=None, valid=False)),  # y_t did not parse: never the reference
        (step("a", 0.9), origin("a", valid=False)),  # y_t parsed but the env refused it: no
    ]
    selected = select_augmentation_steps(pairs, low_success_rule(recorder, s_low=0.2), success_threshold=1.0)
    assert selected == pairs[:2]
    # a lower success threshold makes the partial-credit trajectory a success (OSWorld practice: > 0)
    assert select_augmentation_steps(pairs, low_success_rule(recorder, 0.2), success_threshold=0.5) == pairs[:2] + [pairs[5]]


def test_equivalence_group_by_hand():
    original = step()
    alternatives = [
        ("Action: click(start_box='(105,100)')", Action("click", (105, 100))),  # 5 px away: r = 1
        (Generation("Action: click(start_box='(300,300)')", (7, 8, 9), (-0.1, -0.2, -0.3)), Action("click", (300, 300))),  # r = 0
        ("gibberish", None),  # unparseable: r = 0
    ]
    samples = augmentation_samples(original, Action("click", (100, 100)), alternatives, weight=0.5, eps=0.0)
    # rewards [1 (original), 1, 0, 0]
    assert [s.advantage for s in samples] == pytest.approx([SQRT3_OVER_2, SQRT3_OVER_2, -SQRT3_OVER_2, -SQRT3_OVER_2], rel=1e-6)
    assert all(s.source == "augment" and s.weight == 0.5 and s.group == "a/aug" and s.task_id == "a" for s in samples)
    responses = [s.dialogue.turns[-1].response for s in samples]
    assert responses == ["Action: click(start_box='(100,100)')", alternatives[0][0], alternatives[1][0].text, "gibberish"]
    assert [s.dialogue.turns[-1].response_ids for s in samples] == [(1, 2), (), (7, 8, 9), ()]
    for sample in samples:  # same step context, one trainable response
        assert sample.dialogue.instruction == "press the button" and sample.dialogue.a11y == "button"
        assert sample.dialogue.turns[0] is original.dialogue.turns[0]
        assert sample.dialogue.turns[-1].screenshot is original.dialogue.turns[-1].screenshot
        assert [t.trainable for t in sample.dialogue.turns] == [False, True]
    # the original sample is not modified
    assert original.source == "step" and original.advantage == 0.9 and original.dialogue.turns[-1].response_ids == (1, 2)


def test_all_alternatives_equivalent_is_dropped():
    alternatives = [("a", Action("click", (101, 99))), ("b", Action("click", (100, 100)))]
    assert augmentation_samples(step(), Action("click", (100, 100)), alternatives) == []
    assert augmentation_samples(step(), Action("click", (100, 100)), []) == []  # a group of one


def test_unparseable_original_makes_every_alternative_wrong():
    samples = augmentation_samples(step(), None, [("x", Action("wait"))], eps=0.0)
    # rewards [1, 0]: mean 0.5, sample std sqrt(0.5); A = ±0.5 / 0.7071068 = ±0.7071068
    assert [s.advantage for s in samples] == pytest.approx([0.7071068, -0.7071068], rel=1e-6)


def test_env_rewards():
    alternatives = [("x", None), ("y", None), ("z", None)]  # the env judged them; parsing is not needed
    samples = augmentation_samples(step(), Action("wait"), alternatives, reward_fn="env", rewards=[0, 1, 0], eps=0.0)
    # rewards [1, 0, 1, 0]
    assert [s.advantage for s in samples] == pytest.approx([SQRT3_OVER_2, -SQRT3_OVER_2, SQRT3_OVER_2, -SQRT3_OVER_2], rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reward_fn": "env"}, "one per alternative"),
        ({"reward_fn": "env", "rewards": [1.0, 0.0]}, "one per alternative"),
        ({"reward_fn": "env", "rewards": [float("nan")]}, "NaN"),
        ({"rewards": [1.0]}, "only used with algo.aug_reward='env'"),
        ({"reward_fn": "judge"}, "aug_reward='judge'"),
    ],
)
def test_reward_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        augmentation_samples(step(), Action("wait"), [("x", None)], **kwargs)


def test_only_step_samples_can_be_augmented():
    whole = step()
    whole.dialogue.turns[0].trainable = True  # a trajectory sample has several trainable turns
    with pytest.raises(ValueError, match="needs a step sample"):
        augmentation_samples(whole, Action("wait"), [("x", None)])
