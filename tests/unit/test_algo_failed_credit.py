"""Extension 1: credit for the steps of failed trajectories (docs/extensions.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steprl.algo.failed_credit import StateSuccessRecord, failed_step_advantages, promise, trajectory_states
from steprl.types import Action, Observation, Task, Trajectory, Turn


def obs(state: str) -> Observation:
    return Observation(np.zeros((2, 2, 3), np.uint8), "do it", state_hash=state)


def trajectory(
    states: tuple[str, ...],
    final: str | None,
    score: float,
    task_id: str = "t",
    last: str = "click",
    env_error: str | None = None,
) -> Trajectory:
    """Turns acting on `states`, the last one with action type `last`, ending in state `final`."""
    task = Task(id=task_id, family="f", instruction="do it")
    turns = [
        Turn(observation=obs(s), response=f"step {i}", action=Action(last if i == len(states) - 1 else "click", (1, 1)))
        for i, s in enumerate(states)
    ]
    final_obs = obs(final) if final is not None else None
    return Trajectory(task=task, turns=turns, score=score, success=score >= 1.0, final_observation=final_obs, env_error=env_error)


def round_of_four() -> list[Trajectory]:
    """Two successes s0 → A → B → C, two failures: s0 → A → X → Y (step budget ran out) and
    s0 → X → Y, the last one ending with `finished`."""
    return [
        trajectory(("s0", "A", "B"), "C", 1.0, last="finished"),
        trajectory(("s0", "A", "B"), "C", 1.0, last="finished"),
        trajectory(("s0", "A", "X"), "Y", 0.0),
        trajectory(("s0", "X"), "Y", 0.0, last="finished"),
    ]


def test_trajectory_states_are_the_observations_then_the_final_one():
    assert trajectory_states(trajectory(("a", "b"), "c", 0.0)) == ["a", "b", "c"]
    assert trajectory_states(trajectory(("a", "b"), None, 0.0)) == ["a", "b", None]


def test_promise_smooths_towards_the_task_rate():
    # (k + β·p) / (n + β): (2 + 2·(2/3)) / (2 + 2) = (10/3) / 4 = 5/6; unvisited: p
    assert promise(2, 2, 2 / 3, 2.0) == pytest.approx(5 / 6)
    assert promise(0, 0, 0.3, 2.0) == pytest.approx(0.3)
    assert promise(1, 4, 0.9, 0.0) == pytest.approx(0.25)  # β = 0: the raw rate
    assert promise(0, 0, 0.3, 0.0) == pytest.approx(0.3)  # β = 0 and no visit: p, not 0/0


def test_failed_step_advantages_by_hand():
    # All four rollouts: K = 2, N = 4. Visits (each rollout once per state):
    #   s0: n 4, k 2;  A: n 3, k 2;  B, C: n 2, k 2;  X: n 2, k 0;  Y: n 2, k 0.
    # Rollout 3 (s0 → A → X → Y), leave-one-out: N' = 3, K' = 2, p = 2/3; β = 2:
    #   v(s0) = (2 + 4/3) / (3 + 2) = 2/3;  v(A) = (2 + 4/3) / (2 + 2) = 5/6
    #   v(X) = (0 + 4/3) / (1 + 2) = 4/9;   v(Y) = 4/9
    #   A_0 = v(A) − v(s0) = 1/6;  A_1 = v(X) − v(A) = 4/9 − 5/6 = −7/18;  A_2 = v(Y) − v(X) = 0
    # Rollout 4 (s0 → X, then `finished` in X), leave-one-out: p = 2/3, v(s0) = 2/3, v(X) = (0 + 4/3) / (1 + 2) = 4/9
    #   A_0 = 4/9 − 2/3 = −2/9;  A_1: terminal failure, v = 0: 0 − 4/9 = −4/9
    # weight w = 0.5 halves every number.
    advantages = failed_step_advantages(round_of_four(), success_threshold=1.0, weight=0.5, prior_strength=2.0)
    assert advantages[0] is None and advantages[1] is None
    assert advantages[2] == pytest.approx(0.5 * np.array([1 / 6, -7 / 18, 0.0]))
    assert advantages[3] == pytest.approx(0.5 * np.array([-2 / 9, -4 / 9]))


def test_task_baseline_by_hand():
    # baseline "task": A_t = w·(v(s_{t+1}) − p), p = 2/3 (numbers of the test above), w = 1
    # rollout 3: 5/6 − 2/3 = 1/6;  4/9 − 2/3 = −2/9;  4/9 − 2/3 = −2/9
    # rollout 4: 4/9 − 2/3 = −2/9;  terminal: 0 − 2/3 = −2/3
    advantages = failed_step_advantages(round_of_four(), 1.0, weight=1.0, baseline="task")
    assert advantages[2] == pytest.approx([1 / 6, -2 / 9, -2 / 9])
    assert advantages[3] == pytest.approx([-2 / 9, -2 / 3])


def test_without_the_terminal_rule_the_last_step_uses_the_final_state():
    # rollout 4's last step X → Y: v(Y) − v(X) = 4/9 − 4/9 = 0
    advantages = failed_step_advantages(round_of_four(), 1.0, weight=1.0, penalise_terminal=False)
    assert advantages[3] == pytest.approx([-2 / 9, 0.0])


def test_a_state_no_other_rollout_visited_gives_zero():
    # Z and W are only on this failed rollout: the step into Z and the step into W are unknown (0);
    # the first step reaches A, which the success visited: v(A) = (1 + 2·1) / (1 + 2) = 1, v(s0) = 1, so 0 too.
    rollouts = [trajectory(("s0", "A"), "B", 1.0), trajectory(("s0", "A", "Z"), "W", 0.0)]
    advantages = failed_step_advantages(rollouts, 1.0, weight=1.0)
    assert advantages[1] == pytest.approx([0.0, 0.0, 0.0])
    # min_visits = 2: A (one other visit) no longer counts as known either
    assert failed_step_advantages(rollouts, 1.0, min_visits=2)[1] == pytest.approx([0.0, 0.0, 0.0])


def test_min_visits_by_hand():
    # With min_visits = 2, rollout 3's first step (into A, 2 other visits) keeps its 1/6; the step
    # into X (1 other visit) and into Y (1 other visit) become unknown: 0.
    advantages = failed_step_advantages(round_of_four(), 1.0, weight=1.0, min_visits=2)
    assert advantages[2] == pytest.approx([1 / 6, 0.0, 0.0])


def test_no_data_all_successes_all_failures_and_env_errors():
    lonely = trajectory(("s0", "A"), "B", 0.0)
    assert failed_step_advantages([lonely], 1.0)[0] == pytest.approx([0.0, 0.0])  # no other rollout: nothing known
    assert failed_step_advantages([], 1.0) == []
    successes = [trajectory(("s0", "A"), "B", 1.0) for _ in range(3)]
    assert failed_step_advantages(successes, 1.0) == [None, None, None]
    # all failures through the same states: every v is 0 (p = 0, k = 0): no credit at all
    failures = [trajectory(("s0", "A"), "B", 0.0) for _ in range(3)]
    assert all(np.all(a == 0.0) for a in failed_step_advantages(failures, 1.0))
    crashed = trajectory(("s0", "A"), "B", 0.0, env_error="vm died")
    empty = trajectory((), "s0", 0.0)
    assert failed_step_advantages([crashed, empty], 1.0)[0] is None
    assert failed_step_advantages([crashed, empty], 1.0)[1].shape == (0,)


def test_env_error_rollouts_are_not_counted():
    # the crashed rollout visited A "successfully" (score 1) but says nothing: rollout 2 stays unknown
    crashed = trajectory(("s0", "A"), "B", 1.0, env_error="timeout")
    failed = trajectory(("s0", "A"), "B", 0.0)
    assert failed_step_advantages([crashed, failed], 1.0)[1] == pytest.approx([0.0, 0.0])


def test_success_threshold_decides_what_failed():
    # score 0.5: a success with threshold 0.5 (None), a failure with threshold 1.0 (an array)
    rollouts = [trajectory(("s0",), "A", 0.5), trajectory(("s0",), "A", 1.0)]
    assert failed_step_advantages(rollouts, 0.5)[0] is None
    assert failed_step_advantages(rollouts, 1.0)[0] is not None


def test_the_record_carries_successes_from_past_rounds():
    # Past round (in the record): a success s0 → A → B and a failure s0 → Z.
    # This round: one failure s0 → A → Z and nothing else, so all the signal comes from the record.
    # Counts = record + round: K = 1, N = 3; s0: n 3, k 1; A: n 2, k 1; Z: n 2, k 0.
    # Leave the new failure out: N' = 2, K' = 1, p = 1/2; β = 2:
    #   v(s0) = (1 + 1) / (2 + 2) = 1/2;  v(A) = (1 + 1) / (1 + 2) = 2/3;  v(Z) = (0 + 1) / (1 + 2) = 1/3
    #   A_0 = 2/3 − 1/2 = 1/6;  A_1 = 1/3 − 2/3 = −1/3
    record = StateSuccessRecord()
    record.update([trajectory(("s0", "A"), "B", 1.0), trajectory(("s0",), "Z", 0.0)], 1.0)
    now = [trajectory(("s0", "A"), "Z", 0.0)]
    assert failed_step_advantages(now, 1.0, record, weight=1.0)[0] == pytest.approx([1 / 6, -1 / 3])
    assert failed_step_advantages(now, 1.0, None, weight=1.0)[0] == pytest.approx([0.0, 0.0])  # without history
    assert record.task_counts("t") == (1.0, 2.0)  # scoring does not change the record


def test_record_counts_each_state_once_per_rollout_and_decays():
    record = StateSuccessRecord(decay=0.5)
    record.update([trajectory(("s0", "A", "s0"), "A", 1.0)], 1.0)  # s0 and A visited twice: counted once
    assert record.state_counts("t", "s0") == (1.0, 1.0) and record.state_counts("t", "A") == (1.0, 1.0)
    # next round: history × 0.5, then one failure through s0: s0 k = 0.5, n = 0.5 + 1 = 1.5
    record.update([trajectory(("s0",), "B", 0.0)], 1.0)
    assert record.state_counts("t", "s0") == (0.5, 1.5)
    assert record.state_counts("t", "A") == (0.5, 0.5)
    assert record.task_counts("t") == (0.5, 1.5)
    assert record.state_counts("t", "never") == (0.0, 0.0) and record.task_counts("other") == (0.0, 0.0)


def test_add_round_equals_update_with_every_ranks_trajectories():
    """Under DDP each rank counts its own rollouts; adding their counts (one decay) must equal one
    update with all of them."""
    rounds = round_of_four()
    whole = StateSuccessRecord(decay=0.5)
    whole.update([trajectory(("s0",), "A", 1.0)], 1.0)
    parts = whole.copy()
    whole.update(rounds, 1.0)
    rank0, rank1 = StateSuccessRecord(), StateSuccessRecord()
    rank0.update(rounds[:2], 1.0)
    rank1.update(rounds[2:], 1.0)
    parts.add_round([rank0.state_dict(), rank1.state_dict()])
    assert parts.state_dict() == whole.state_dict()
    # by hand: s0 was (1, 1), × 0.5 = (0.5, 0.5), + 2 successes and 2 failures = (2.5, 4.5)
    assert parts.state_counts("t", "s0") == (2.5, 4.5) and parts.state_counts("t", "X") == (0.0, 2.0)


def test_decayed_entries_are_forgotten():
    record = StateSuccessRecord(decay=0.1, min_count=0.05)
    record.update([trajectory(("s0",), "A", 1.0, task_id="old")], 1.0)
    record.update([], 1.0)  # n = 0.1: kept
    assert record.num_states() == 2
    record.update([], 1.0)  # n = 0.01 < 0.05: gone, task too
    assert record.num_states() == 0 and record.task_counts("old") == (0.0, 0.0)


def test_record_state_dict_round_trip_is_plain_python():
    record = StateSuccessRecord()
    record.update(round_of_four(), 1.0)
    state = json.loads(json.dumps(record.state_dict()))  # plain types only
    restored = StateSuccessRecord()
    restored.load_state_dict(state)
    assert restored.state_dict() == record.state_dict()
    assert restored.state_counts("t", "A") == (2.0, 3.0)
    for got, expected in zip(failed_step_advantages(round_of_four(), 1.0, restored), failed_step_advantages(round_of_four(), 1.0, record)):
        assert (got is None and expected is None) or np.array_equal(got, expected)


def test_bad_settings_and_states_are_refused():
    with pytest.raises(ValueError, match="failed_credit_baseline"):
        failed_step_advantages(round_of_four(), 1.0, baseline="trajectory")
    with pytest.raises(ValueError, match="min_visits"):
        failed_step_advantages(round_of_four(), 1.0, min_visits=0)
    with pytest.raises(ValueError, match="failed_credit_decay"):
        StateSuccessRecord(decay=0.0)
    with pytest.raises(ValueError, match="missing"):
        StateSuccessRecord().load_state_dict({"rates": {}})
    with pytest.raises(ValueError, match="0 <= k <= n"):
        StateSuccessRecord().load_state_dict({"totals": {"t": [3, 2]}, "states": {}})
