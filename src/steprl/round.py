"""One RL iteration (round) as a function a test can call: no Lightning in here.

    schedule B tasks -> SR-Traj moves copies of mastered tasks to the cache -> shard the B·N copies
    over ranks -> collect them with the current policy -> update the success-rate record with raw
    successes -> training samples and advantages -> SL-GRPO groups for low-success tasks
    -> old log-probs on each sample's training context

The extensions of docs/extensions.md plug into the second half (`finish`) when their switch is on:
failed-trajectory credit (a per-state success record), outcome-judged SL-GRPO (continuations run
through the env pool) and the Beta-posterior thresholds (a Beta record per task).

`RoundRunner.run(epoch, policy)` returns a `Round`: the samples (each with its origin) and one
`RoundReport`. The maths is in `steprl.algo` (docs/algorithm.md says which function computes which
formula); this file orders the steps, times them and keeps the state a checkpoint needs (the record,
the scheduler, the env-step total). `SuccessRateDataModule` calls it once per epoch.

Under DDP each rank rolls out its share of the copies (all copies of a task on one rank, so group
advantages stay exact), the success counts are gathered so every rank holds the same record, and
every rank runs the same number of old-log-prob passes (a forward is a collective under FSDP).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from steprl.algo.adaptive_thresholds import BetaRecord, BetaScheduler, beta_low_success_rule
from steprl.algo.augment import augmentation_samples, low_success_rule, num_alternatives, select_augmentation_steps
from steprl.algo.context import step_dialogue
from steprl.algo.failed_credit import StateSuccessRecord
from steprl.algo.outcome_reward import OutcomeGroup, outcome_augmentation_samples, outcome_rewards
from steprl.algo.spec import (
    AlgorithmSpec,
    SampleOrigin,
    beta_scheduler_knobs,
    build_recorder,
    build_samples_with_origins,
    build_scheduler,
    build_state_record,
)
from steprl.algo.success_rate import SuccessRateRecorder, counts_from_trajectories
from steprl.comm import Comm, TorchComm
from steprl.errors import ActionParseError, CheckpointError
from steprl.rollout.inference import inference
from steprl.rollout.replay import ContinuationState, continuation_state, run_calls, same_next_state_rewards
from steprl.types import Action, Dialogue, DialogueTurn, Task, TrainingSample, Trajectory, Turn


# ---------------------------------------------------------------------------------------- records
@dataclass
class RoundReport:
    """Counts and timings of one round, on this rank (success statistics are global after the
    gather: every rank holds the same `task_counts` and record summaries)."""

    epoch: int
    started_at: float  # time.perf_counter() when the round began
    # rollouts on this rank
    trajectories: int = 0
    valid: int = 0
    successes: int = 0
    env_errors: int = 0
    env_steps: int = 0
    invalid_actions: int = 0
    collect_stats: Any = None  # the collector's CollectStats of this round (health: restarts, retries, ...)
    # all ranks: task_id -> (successes, valid rollouts) this round
    task_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    env_steps_total: int = 0  # env steps of every rank, every round so far
    # SR-Traj and the success-rate record after this round's update
    replaced_copies: int = 0
    cache_size: int = 0
    sr_mean: float = 0.0
    above_s0: int = 0
    solve_all: int = 0
    solve_none: int = 0
    solve_partial: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    # training samples on this rank
    samples: int = 0
    aug_samples: int = 0
    adv_mean: float = 0.0
    optimizer_steps: int = 0  # mini-batches of this round that update the weights (set by the datamodule)
    aug_replay_failures: int = 0  # SL-GRPO groups dropped because their env replay failed
    # the extensions (docs/extensions.md); 0 when off
    failed_credit_samples: int = 0  # step samples from failed trajectories (algo.failed_credit)
    aug_env_steps: int = 0  # env steps of outcome continuations on this rank (algo.aug_reward=outcome; in env_steps_total)
    aug_outcome_groups: int = 0  # outcome-judged groups kept (not all-equal, not failed)
    # wall times of the parts of the round (seconds)
    rollout_s: float = 0.0
    env_s: float = 0.0
    generate_s: float = 0.0
    augment_s: float = 0.0
    old_logprob_s: float = 0.0
    # overlap (steprl.overlap.RoundPipeline; docs/overlap.md)
    policy_lag: int = 0  # rounds of updates between the weights that generated the rollouts and those they train
    wait_data_s: float = 0.0  # how long the trainer waited for this round's collection
    env_idle_s: float = 0.0  # how long the envs waited between the previous collection's end and this one's start

    @property
    def success_rate(self) -> float:
        return self.successes / self.valid if self.valid else float("nan")

    @property
    def mean_length(self) -> float:
        return self.env_steps / self.valid if self.valid else float("nan")

    @property
    def invalid_action_rate(self) -> float:
        return self.invalid_actions / self.env_steps if self.env_steps else float("nan")


@dataclass
class Collected:
    """The environment-bound half of a round: its trajectories and the report so far."""

    epoch: int
    trajectories: list[Trajectory]
    report: RoundReport


@dataclass
class Round:
    """What a round produced: training samples (old log-probs filled in), where each came from
    (`origins[i]` is the trajectory and turn of `samples[i]`; an SL-GRPO sample has its reference
    step's origin), and the report."""

    samples: list[TrainingSample]
    origins: list[SampleOrigin]
    report: RoundReport


# ---------------------------------------------------------------------------------------- helpers
def shard_groups(copies: Sequence[str], world: int) -> list[list[int]]:
    """Split the round's copies over ranks, keeping all copies of one task on one rank.

    Group advantages (T-GRPO, GiGPO, SR-Adv's success filter) are computed over the rollouts of one
    task in the round; keeping a task's copies together makes each rank's advantages exact without
    exchanging trajectories. Groups go largest first to the rank with the fewest copies (ties:
    lowest rank): deterministic, and balanced to within one group. Returns per rank the indices.
    """
    groups: dict[str, list[int]] = {}
    for index, task_id in enumerate(copies):
        groups.setdefault(task_id, []).append(index)
    shards: list[list[int]] = [[] for _ in range(world)]
    for task_id in sorted(groups, key=lambda t: (-len(groups[t]), t)):
        target = min(range(world), key=lambda r: (len(shards[r]), r))
        shards[target].extend(groups[task_id])
    return [sorted(shard) for shard in shards]


def merge_counts(per_rank: Sequence[dict[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """Sum (k_i, n_i) per task over ranks."""
    merged: dict[str, tuple[int, int]] = {}
    for counts in per_rank:
        for task_id, (k, n) in counts.items():
            k0, n0 = merged.get(task_id, (0, 0))
            merged[task_id] = (k0 + k, n0 + n)
    return merged


def padding_sample(task: Task, screen_size: tuple[int, int]) -> TrainingSample:
    """A sample with no trainable token: keeps ranks in step (same number of forwards and
    mini-batches on every rank); its weight is 0 and it has no old log-probs."""
    blank = np.zeros((screen_size[1], screen_size[0], 3), dtype=np.uint8)
    dialogue = Dialogue(task.instruction, [DialogueTurn(blank, response="wait()", trainable=False)])
    return TrainingSample(dialogue=dialogue, advantage=0.0, task_id=task.id, source="step", weight=0.0, old_logprobs=())


def generation_dialogue(dialogue: Dialogue, suffix: str = "") -> Dialogue:
    """A step sample's context with its last response removed (what the policy answers)."""
    turns = list(dialogue.turns)
    turns[-1] = DialogueTurn(turns[-1].screenshot)
    instruction = f"{dialogue.instruction} {suffix}".strip() if suffix else dialogue.instruction
    return dataclasses.replace(dialogue, instruction=instruction, turns=turns)


def to_device(batch: dict[str, Any], policy: Any) -> dict[str, Any]:
    device = next(policy.parameters()).device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---------------------------------------------------------------------------------------- the runner
class RoundRunner:
    """Runs one RL round per call (see the module docstring) and keeps its state across rounds.

    Args:
        train_tasks: the environment's training split.
        collector: a `steprl.rollout.RolloutCollector` (owns the env worker pool).
        algo: the algorithm switches (`AlgorithmSpec`).
        tasks_per_epoch: B; rollouts_per_task: N (the round's budget is B·N trajectories).
        logprob_batch_size: samples per no-grad pass when computing old log-probs.
        parse_action: the environment's text -> Action parser (SL-GRPO equivalence rewards).
        screen_size: the environment's (width, height) (padding samples).
        comm: rank, world and collectives (default: torch.distributed when initialised).
        seed: seeds the schedule, SR-Traj draws and sampling.
    """

    def __init__(
        self,
        *,
        train_tasks: Sequence[Task],
        collector: Any,
        algo: AlgorithmSpec,
        tasks_per_epoch: int,
        rollouts_per_task: int,
        logprob_batch_size: int = 32,
        parse_action: Callable[[str], Action] | None = None,
        screen_size: tuple[int, int] = (448, 280),
        comm: Comm | None = None,
        seed: int = 0,
    ) -> None:
        if rollouts_per_task < 1:
            raise ValueError(f"data.rollouts_per_task (N) = {rollouts_per_task}; it must be at least 1.")
        if logprob_batch_size < 1:
            raise ValueError("data.logprob_batch_size must be >= 1.")
        algo.validate_budget(rollouts_per_task)
        self.tasks = {task.id: task for task in train_tasks}
        self.collector = collector
        self.algo = algo
        self.rollouts_per_task = int(rollouts_per_task)
        self.logprob_batch_size = int(logprob_batch_size)
        self.parse_action = parse_action
        self.screen_size = (int(screen_size[0]), int(screen_size[1]))
        self.comm: Comm = comm if comm is not None else TorchComm()
        self.seed = int(seed)
        self.recorder: SuccessRateRecorder = build_recorder(algo)
        self.scheduler = build_scheduler(algo, list(self.tasks), tasks_per_epoch, self.seed)
        self.env_steps_total = 0
        self.state_record: StateSuccessRecord | None = build_state_record(algo)  # extension 1
        self.beta_record: BetaRecord | None = self._build_beta_record()  # extension 3

    # ------------------------------------------------------------------ the round
    def run(self, epoch: int, policy: Any, progress: Callable[[int, int], Any] | None = None) -> Round:
        """Round `epoch` with `policy` (see the module docstring): `collect`, then `finish`."""
        return self.finish(self.collect(epoch, policy, progress), policy)

    def collect(self, epoch: int, policy: Any, progress: Callable[[int, int], Any] | None = None) -> Collected:
        """Steps 1-2, the environment-bound half: schedule, SR-Traj (from the record as it is now),
        shard, and roll out this rank's copies with `policy` (which may be a snapshot of older weights)."""
        report = RoundReport(epoch=epoch, started_at=time.perf_counter())
        rank, world = self.comm.rank, self.comm.world

        # 1. schedule B tasks; SR-Traj moves copies of mastered tasks to the cache C_Q
        allocation = self.scheduler.reallocate(self.scheduler.schedule(epoch), self.rollouts_per_task, self.recorder)
        report.replaced_copies, report.cache_size = allocation.num_replaced, allocation.cache_size
        my_copies = [allocation.copies[i] for i in shard_groups(allocation.copies, world)[rank]]

        # 2. roll out this rank's copies
        self._reseed(policy, epoch, rank)
        started = time.perf_counter()
        with inference(policy):
            trajectories = self.collector.collect([self.tasks[t] for t in my_copies], policy, progress=progress)
        report.rollout_s = time.perf_counter() - started
        self._count_rollouts(report, trajectories)
        return Collected(epoch, trajectories, report)

    def finish(self, collected: Collected, policy: Any) -> Round:
        """Steps 3-4, the trainer-side half: update the record (a collective under DDP), build the
        samples, SL-GRPO with `policy`, and old log-probs with `policy` (the weights about to be updated)."""
        trajectories, report = collected.trajectories, collected.report

        # 3. the success-rate record: every rank adds every rank's raw successes
        recorder_before = self.recorder.copy()
        local_counts = counts_from_trajectories(trajectories, self.algo.success_threshold)
        gathered = self.comm.gather((local_counts, report.env_steps))
        report.task_counts = merge_counts([counts for counts, _ in gathered])
        self.env_steps_total += sum(steps for _, steps in gathered)
        report.env_steps_total = self.env_steps_total
        self.recorder.update(report.task_counts)
        self._summarise_record(report)
        beta_before = self._update_beta_record(report.task_counts)
        state_before = self._update_state_record(trajectories)

        # 4. samples and advantages, SL-GRPO, old log-probs (each reads the record snapshot its knob names)
        snapshot = {"before": recorder_before, "after": self.recorder}
        pairs = build_samples_with_origins(self.algo, trajectories, snapshot[self.algo.sr_adv_record], state_before)
        if self.algo.failed_credit:
            report.failed_credit_samples = sum(o.trajectory.score < self.algo.success_threshold for _, o in pairs)
        started = time.perf_counter()
        if self.algo.augment:
            is_low = self._low_success_rule(snapshot[self.algo.slgrpo_record], beta_before)
            pairs += self._augment(policy, pairs, is_low, report)
        if self.algo.augment and self.algo.aug_reward == "outcome":  # same condition on every rank: a collective
            extra = sum(self.comm.gather(report.aug_env_steps))
            self.env_steps_total += extra
            report.env_steps_total = self.env_steps_total
        report.augment_s = time.perf_counter() - started
        samples = [sample for sample, _ in pairs]
        report.samples = len(samples)
        report.aug_samples = sum(sample.source == "augment" for sample in samples)
        report.adv_mean = float(np.mean([s.advantage for s in samples])) if samples else 0.0
        started = time.perf_counter()
        with inference(policy):
            samples = self.with_old_logprobs(policy, samples)
        report.old_logprob_s = time.perf_counter() - started
        return Round(samples=samples, origins=[origin for _, origin in pairs], report=report)

    def _count_rollouts(self, report: RoundReport, trajectories: Sequence[Trajectory]) -> None:
        valid = [t for t in trajectories if t.valid]
        report.trajectories = len(trajectories)
        report.valid = len(valid)
        report.successes = sum(t.score >= self.algo.success_threshold for t in valid)
        report.env_errors = len(trajectories) - len(valid)
        report.env_steps = sum(t.length for t in valid)
        report.invalid_actions = sum(t.invalid_actions for t in valid)
        report.collect_stats = self.collector.last_stats
        report.generate_s = self.collector.last_stats.generate_time_s
        report.env_s = max(report.rollout_s - report.generate_s, 0.0)  # waiting for environments

    def _summarise_record(self, report: RoundReport) -> None:
        report.sr_mean = float(self.recorder.mean())  # NaN while the record knows no task
        report.above_s0 = self.recorder.count_above(self.algo.s0)
        report.solve_all, report.solve_none, report.solve_partial = self.recorder.solve_counts(report.task_counts)
        report.rates = self.recorder.rates

    # ------------------------------------------------------------------ SL-GRPO
    def _low_success_rule(self, record: SuccessRateRecorder, beta_before: BetaRecord | None) -> Callable[[str], bool]:
        """SL-GRPO's "this task is hard": ŝ_i ≤ s_low in `record` (the paper), or with
        `algo.aug_select=beta` the posterior rule on the Beta record before/after this round's
        update (algo.slgrpo_record)."""
        if self.algo.aug_select != "beta":
            return low_success_rule(record, self.algo.s_low)
        beta = beta_before if self.algo.slgrpo_record == "before" else self.beta_record
        assert beta is not None
        return beta_low_success_rule(beta, self.rollouts_per_task, self.algo.beta_aug_q, self.algo.beta_rule, self.algo.s_low)

    def _augment(
        self, policy: Any, pairs: Sequence[tuple[TrainingSample, SampleOrigin]], is_low: Callable[[str], bool], report: RoundReport
    ) -> list[tuple[TrainingSample, SampleOrigin]]:
        """Alternatives for the steps of successful trajectories of low-success tasks (`is_low`),
        scored against the original action a_t (equivalence, env) or by the outcome of continuing
        them with `policy` (outcome)."""
        per_step = num_alternatives(self.rollouts_per_task)
        selected = select_augmentation_steps(pairs, is_low, self.algo.success_threshold)
        if not selected or per_step == 0:
            return []
        prompts = [generation_dialogue(sample.dialogue, self.algo.aug_suffix) for sample, _ in selected for _ in range(per_step)]
        with inference(policy):
            generations = policy.generate(prompts, temperature=self.algo.aug_temperature)
        groups = [generations[i * per_step : (i + 1) * per_step] for i in range(len(selected))]
        if self.algo.aug_reward == "outcome":
            return self._outcome_augment(policy, selected, groups, report)
        env_rewards = self._env_rewards([origin for _, origin in selected], groups, report) if self.algo.aug_reward == "env" else None
        augmented: list[tuple[TrainingSample, SampleOrigin]] = []
        for index, ((sample, origin), group) in enumerate(zip(selected, groups)):
            rewards = None if env_rewards is None else env_rewards[index]
            if env_rewards is not None and rewards is None:
                continue  # the env replay failed: no verdict, no group
            samples = augmentation_samples(
                sample,
                origin.trajectory.turns[origin.turn_index].action,
                [(g, self._parse(g.text)) for g in group],
                self.algo.aug_reward,
                rewards=rewards,
                radius_px=self.algo.aug_radius_px,
                eps=self.algo.grpo_eps,
                weight=self.algo.aug_weight,
            )
            augmented += [(s, origin) for s in samples]
        return augmented

    # ------------------------------------------------------------------ extension 2: outcome-judged SL-GRPO
    def _outcome_augment(
        self,
        policy: Any,
        selected: Sequence[tuple[TrainingSample, SampleOrigin]],
        groups: Sequence[Sequence[Any]],
        report: RoundReport,
    ) -> list[tuple[TrainingSample, SampleOrigin]]:
        """`algo.aug_reward=outcome`: continue every alternative (and, with
        `aug_outcome_rescore_original`, the original a_t) M times with `policy`, and score each
        group by the outcomes (`outcome_rewards`). A group whose original has no outcome is dropped
        and counted in `aug_replay_failures`."""
        m = self.algo.aug_outcome_continuations
        rescore = self.algo.aug_outcome_rescore_original
        starts: list[tuple[SampleOrigin, str]] = []
        for (sample, origin), group in zip(selected, groups):
            members = [g.text for g in group] + ([origin.trajectory.turns[origin.turn_index].response] if rescore else [])
            starts += [(origin, text) for text in members for _ in range(m)]
        scores = iter(self._continue(policy, starts, report))
        augmented: list[tuple[TrainingSample, SampleOrigin]] = []
        for (sample, origin), group in zip(selected, groups):
            alternatives = [[next(scores) for _ in range(m)] for _ in group]
            original = [next(scores) for _ in range(m)] if rescore else origin.trajectory.score
            try:
                scored: OutcomeGroup = outcome_rewards(original, alternatives, self.algo.success_threshold, self.algo.grpo_eps)
            except ValueError:  # every continuation of the original errored: no verdict, no group
                report.aug_replay_failures += 1
                continue
            report.aug_outcome_groups += not scored.dropped
            samples = outcome_augmentation_samples(sample, list(group), scored, weight=self.algo.aug_weight)
            augmented += [(s, origin) for s in samples]
        return augmented

    def _continue(self, policy: Any, starts: Sequence[tuple[SampleOrigin, str]], report: RoundReport) -> list[float | None]:
        """The score of each continuation: from step t of `origin`'s trajectory take `response`,
        then let `policy` act (sampling as in rollouts, batched over continuations) until the
        episode ends, the task's step budget or `aug_outcome_horizon` H is reached (then the
        unfinished episode is evaluated as it stands). Every env visit is `continuation_state` on
        the pool, with the pool's timeouts and retries: a restore of the previous call's snapshot
        and one step where the env can snapshot, else a reset and a replay. None for a
        continuation whose env failed."""
        horizon, timeouts = self.algo.aug_outcome_horizon, self.collector.timeouts
        scores: list[float | None] = [None] * len(starts)
        turns: list[list[Turn]] = []
        limits: list[int] = []
        for origin, response in starts:
            trajectory, t = origin.trajectory, origin.turn_index
            assert t is not None
            turns.append([*trajectory.turns[:t], Turn(observation=trajectory.turns[t].observation, response=response)])
            budget = min(x for x in (trajectory.task.max_steps, self.collector.max_turns) if x is not None)
            limits.append(min(budget, t + horizon) if horizon is not None else budget)
        resume: list[Any] = [None] * len(starts)  # the env's snapshot after the last call (None: replay)
        active = list(range(len(starts)))
        while active:
            calls = [(starts[i][0].trajectory.task, [turn.response for turn in turns[i]], limits[i], resume[i]) for i in active]
            longest = max(len(responses) for _, responses, _, _ in calls)
            states, stats = run_calls(
                self.collector.pool,
                continuation_state,
                calls,
                timeout_s=timeouts["reset"] + longest * timeouts["step"] + timeouts["evaluate"],
                max_retries=self.collector.max_retries,
            )
            waiting: list[tuple[int, ContinuationState]] = []
            for i, state in zip(active, states):
                if state is None:
                    continue  # the env failed after its retries: this continuation says nothing
                report.aug_env_steps += state.env_steps
                if state.done:
                    scores[i] = state.score
                else:
                    resume[i] = state.resume
                    waiting.append((i, state))
            if waiting:
                dialogues = [self._continuation_dialogue(starts[i][0].trajectory.task, turns[i], state) for i, state in waiting]
                with inference(policy):
                    generations = policy.generate(dialogues)
                for (i, state), generation in zip(waiting, generations):
                    turns[i].append(Turn(observation=state.observation, response=generation.text))
            active = [i for i, _ in waiting]
        return scores

    def _continuation_dialogue(self, task: Task, turns: Sequence[Turn], state: ContinuationState) -> Dialogue:
        """The policy's context in a continuation, built as the collector builds a rollout's."""
        return step_dialogue(
            task.instruction,
            turns,
            state.observation.screenshot,
            num_responses=self.algo.history_responses,
            num_screenshots=self.algo.history_screenshots,
            a11y=state.observation.a11y,
        )

    # ------------------------------------------------------------------ extensions 1 and 3: their records
    def _build_beta_record(self) -> BetaRecord | None:
        """The Beta posterior per task: the scheduler's own with `sampling=beta`, a separate one when
        only SL-GRPO reads it (`aug_select=beta`), else None."""
        if isinstance(self.scheduler, BetaScheduler):
            return self.scheduler.record
        if self.algo.uses_beta_record:
            knobs = beta_scheduler_knobs(self.algo)
            return BetaRecord(knobs["prior_a"], knobs["prior_b"], knobs["decay"])
        return None

    def _update_beta_record(self, task_counts: dict[str, tuple[int, int]]) -> BetaRecord | None:
        """Add this round's global (k_i, n_i) to the Beta record; returns a copy of it as it was."""
        if self.beta_record is None:
            return None
        before = BetaRecord(self.beta_record.prior_a, self.beta_record.prior_b, self.beta_record.decay)
        before.load_state_dict(self.beta_record.state_dict())
        self.beta_record.update(task_counts)
        return before

    def _update_state_record(self, trajectories: Sequence[Trajectory]) -> StateSuccessRecord | None:
        """Add this round's state visits of every rank to the per-state record (a collective);
        returns a copy of it as it was, which the failed-step advantages read (this rank holds all
        rollouts of its tasks, so the round's own counts come from its trajectories)."""
        if self.state_record is None:
            return None
        before = self.state_record.copy()
        mine = StateSuccessRecord()
        mine.update(trajectories, self.algo.success_threshold)
        self.state_record.add_round(self.comm.gather(mine.state_dict()))
        return before

    def _parse(self, text: str) -> Action | None:
        if self.parse_action is None:
            return None
        try:
            return self.parse_action(text)
        except ActionParseError:  # an unparseable alternative gets reward 0
            return None

    def _env_rewards(self, origins: Sequence[SampleOrigin], groups: Sequence[Sequence[Any]], report: RoundReport) -> list[list[float] | None]:
        """`algo.aug_reward=env`: each group's rewards from replaying its trajectory in an env worker
        (`same_next_state_rewards`), with the pool's timeouts and retries; None where it failed."""
        calls = []
        for origin, group in zip(origins, groups):
            trajectory, t = origin.trajectory, origin.turn_index
            prefix = [turn.response for turn in trajectory.turns[:t]]
            calls.append((trajectory.task, prefix, trajectory.turns[t].response, [g.text for g in group]))
        steps = max(len(prefix) + len(alternatives) + 1 for _, prefix, _, alternatives in calls)
        timeouts = self.collector.timeouts
        results, stats = run_calls(
            self.collector.pool,
            same_next_state_rewards,
            calls,
            timeout_s=timeouts["reset"] + steps * timeouts["step"],  # one reset and every step of the longest replay
            max_retries=self.collector.max_retries,
        )
        report.aug_replay_failures = stats.failed
        return results

    # ------------------------------------------------------------------ old log-probs
    def with_old_logprobs(self, policy: Any, samples: list[TrainingSample]) -> list[TrainingSample]:
        """log π_old on each sample's training context, right before the update (docs/algorithm.md §5).

        Every rank runs the same number of forward passes (padded with a sample that has no target
        token): with sharded parameters (FSDP FULL_SHARD, ZeRO-3) a forward is a collective call.
        """
        size = self.logprob_batch_size
        chunks = [samples[start : start + size] for start in range(0, len(samples), size)]
        chunks += [[] for _ in range(self.comm.all_reduce_max([len(chunks)])[0] - len(chunks))]
        out = []
        for chunk in chunks:
            batch = to_device(policy.collate([s.dialogue for s in chunk or [self.padding_sample()]]), policy)
            logp, _ = policy.token_logprobs(batch)
            mask = batch["target_mask"]
            for row, sample in enumerate(chunk):
                values = logp[row][mask[row]].float().cpu().tolist()
                out.append(dataclasses.replace(sample, old_logprobs=tuple(values)))
        return out

    def padding_sample(self) -> TrainingSample:
        return padding_sample(next(iter(self.tasks.values())), self.screen_size)

    def _reseed(self, policy: Any, epoch: int, rank: int) -> None:
        """Sampling randomness is a function of (seed, epoch, rank), so a resumed run samples
        exactly what an uninterrupted one would (with a deterministic pool)."""
        if hasattr(policy, "reseed"):
            policy.reseed(self.seed * 1_000_003 + epoch * 1_009 + rank)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        state = {
            "recorder": self.recorder.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "env_steps_total": self.env_steps_total,
        }
        if self.state_record is not None:
            state["state_record"] = self.state_record.state_dict()
        if self.beta_record is not None and not isinstance(self.scheduler, BetaScheduler):  # else in the scheduler's
            state["beta_record"] = self.beta_record.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recorder.load_state_dict(state["recorder"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.env_steps_total = int(state.get("env_steps_total", 0))
        for key, record in (("state_record", self.state_record), ("beta_record", self.beta_record)):
            if record is None or (key == "beta_record" and isinstance(self.scheduler, BetaScheduler)):
                continue
            if key not in state:
                raise CheckpointError(
                    f"The checkpoint has no '{key}': it was saved without the extension that keeps it "
                    "(algo.failed_credit / algo.aug_select=beta). Resume with the algo settings it was saved with."
                )
            record.load_state_dict(state[key])
