"""SuccessRateDataModule: one RL iteration's data, rebuilt every epoch.

Each epoch Lightning calls `train_dataloader()` (reload_dataloaders_every_n_epochs=1), which runs
the round of DESIGN.md "Data flow of one epoch":

    schedule B tasks -> SR-Traj reallocation of the B·N copies -> collect rollouts with the current
    policy -> update the success-rate record with raw successes -> samples and advantages
    -> SL-GRPO augmentation -> old log-probs -> a DataLoader of mini-batches.

The maths is in `steprl.algo`; this class orchestrates, times the parts and records a RoundReport
for the callbacks. Under DDP each rank rolls out its share of the copies (all copies of a task on
one rank, so group advantages stay exact), the success counts are all-gathered so every rank holds
the same record, and every rank trains on the same number of mini-batches.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from steprl.algo.augment import augmentation_samples, num_alternatives, select_augmentation_steps
from steprl.algo.spec import AlgorithmSpec, SampleOrigin, build_recorder, build_samples_with_origins, build_scheduler
from steprl.algo.success_rate import SuccessRateRecorder, counts_from_trajectories
from steprl.lightning.distributed import all_reduce_max, gather_objects, rank_and_world, shard_groups
from steprl.lightning.report import RoundReport
from steprl.types import Action, Dialogue, DialogueTurn, Task, TrainingSample, Trajectory


@dataclass
class EvalResult:
    """Held-out evaluation over every rank's share of the tasks."""

    success_rate: float
    valid: int
    successes: int
    env_errors: int


def _merge_counts(per_rank: Sequence[dict[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    merged: dict[str, tuple[int, int]] = {}
    for counts in per_rank:
        for task_id, (k, n) in counts.items():
            k0, n0 = merged.get(task_id, (0, 0))
            merged[task_id] = (k0 + k, n0 + n)
    return merged


def _generation_dialogue(dialogue: Dialogue, suffix: str = "") -> Dialogue:
    """The context of a step sample with its last response removed (what the policy answers)."""
    turns = list(dialogue.turns)
    turns[-1] = DialogueTurn(turns[-1].screenshot)
    instruction = f"{dialogue.instruction} {suffix}".strip() if suffix else dialogue.instruction
    return dataclasses.replace(dialogue, instruction=instruction, turns=turns)


class SuccessRateDataModule(LightningDataModule):
    """Collects rollouts each epoch and serves the round's training samples.

    Args:
        train_tasks / eval_tasks: the environment's training and held-out splits.
        collector: a `steprl.rollout.RolloutCollector` (owns the env worker pool).
        algo: the algorithm switches (`AlgorithmSpec`).
        tasks_per_epoch: B; rollouts_per_task: N (the round's budget is B·N trajectories).
        batch_size: training samples per mini-batch.
        logprob_batch_size: samples per no-grad pass when computing old log-probs.
        parse_action: the environment's text -> Action parser (SL-GRPO equivalence rewards).
        screen_size: the environment's (width, height) (for DDP padding samples).
        make_env: builds a local environment (only for `algo.aug_reward=env`, which replays a
            trajectory, snapshots the state and tries each alternative from it).
        seed: seeds the schedule, SR-Traj draws, sampling and mini-batch order.
    """

    def __init__(
        self,
        *,
        train_tasks: Sequence[Task],
        eval_tasks: Sequence[Task],
        collector: Any,
        algo: AlgorithmSpec,
        tasks_per_epoch: int,
        rollouts_per_task: int,
        batch_size: int,
        logprob_batch_size: int = 32,
        parse_action: Callable[[str], Action] | None = None,
        make_env: Callable[[], Any] | None = None,
        screen_size: tuple[int, int] = (448, 280),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or logprob_batch_size < 1:
            raise ValueError("data.batch_size and data.logprob_batch_size must be >= 1.")
        if rollouts_per_task < 1:
            raise ValueError(f"data.rollouts_per_task (N) = {rollouts_per_task}; it must be at least 1.")
        algo.validate_budget(rollouts_per_task)
        if algo.augment and algo.aug_reward == "env" and make_env is None:
            raise ValueError("algo.aug_reward=env needs an environment that supports snapshot/restore.")
        self.tasks = {task.id: task for task in train_tasks}
        self.eval_tasks = list(eval_tasks)
        self.collector = collector
        self.algo = algo
        self.rollouts_per_task = int(rollouts_per_task)
        self.batch_size = int(batch_size)
        self.logprob_batch_size = int(logprob_batch_size)
        self.parse_action = parse_action
        self.make_env = make_env
        self.screen_size = tuple(screen_size)
        self.seed = int(seed)
        self.recorder: SuccessRateRecorder = build_recorder(algo)
        self.scheduler = build_scheduler(algo, list(self.tasks), tasks_per_epoch, self.seed)
        self.env_steps_total = 0
        self.next_round = 0  # the epoch whose round comes next (checkpointed)
        self.last_round: RoundReport | None = None
        self.progress: Callable[[int, int], None] | None = None  # set by the RolloutProgress callback
        self._batch_has_tokens: list[bool] = []
        self._local_env = None

    # ------------------------------------------------------------------ the round
    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch
        if epoch < self.next_round:
            # Resuming from an end-of-epoch checkpoint, Lightning asks for the dataloader of the epoch
            # that checkpoint closed before it moves on to the next one (and never iterates it).
            # That round already ran: do not roll it out again (it would update the record twice).
            return DataLoader([[self._padding_sample()]], batch_size=None, collate_fn=self.collate)
        self.next_round = epoch + 1
        report = RoundReport(epoch=epoch, started_at=time.perf_counter())
        policy = self.trainer.lightning_module.policy
        rank, world = rank_and_world()

        # 1. schedule B tasks and let SR-Traj move copies of mastered tasks to the cache
        allocation = self.scheduler.reallocate(
            self.scheduler.schedule(report.epoch), self.rollouts_per_task, self.recorder
        )
        report.replaced_copies, report.cache_size = allocation.num_replaced, allocation.cache_size
        my_copies = [allocation.copies[i] for i in shard_groups(allocation.copies, world)[rank]]

        # 2. roll out this rank's copies with the current policy
        self._reseed_policy(policy, report.epoch, rank)
        started = time.perf_counter()
        with self._inference(policy):
            trajectories = self.collector.collect([self.tasks[t] for t in my_copies], policy, progress=self.progress)
        report.rollout_s = time.perf_counter() - started
        self._record_rollouts(report, trajectories)

        # 3. the success-rate record: every rank adds every rank's raw successes
        recorder_before = self.recorder.copy()
        local_counts = counts_from_trajectories(trajectories, self.algo.success_threshold)
        gathered = gather_objects((local_counts, report.env_steps))
        report.task_counts = _merge_counts([counts for counts, _ in gathered])
        self.env_steps_total += sum(steps for _, steps in gathered)
        self.recorder.update(report.task_counts)
        self._record_summaries(report)

        # 4. samples and advantages, SL-GRPO, old log-probs
        pairs = build_samples_with_origins(self.algo, trajectories, recorder_before)
        samples = [sample for sample, _ in pairs]
        started = time.perf_counter()
        augmented = self._augment(policy, pairs) if self.algo.augment else []
        report.augment_s = time.perf_counter() - started
        samples += augmented
        report.samples, report.aug_samples = len(samples), len(augmented)
        report.adv_mean = float(np.mean([s.advantage for s in samples])) if samples else 0.0
        started = time.perf_counter()
        with self._inference(policy):
            samples = self._with_old_logprobs(policy, samples)
        report.old_logprob_s = time.perf_counter() - started

        self.last_round = report
        return DataLoader(self._minibatches(samples, report.epoch, rank), batch_size=None, collate_fn=self.collate, shuffle=False)

    def _record_rollouts(self, report: RoundReport, trajectories: Sequence[Trajectory]) -> None:
        valid = [t for t in trajectories if t.valid]
        report.trajectories = len(trajectories)
        report.valid = len(valid)
        report.successes = sum(t.score >= self.algo.success_threshold for t in valid)
        report.env_errors = len(trajectories) - len(valid)
        report.env_steps = sum(t.length for t in valid)
        report.invalid_actions = sum(t.invalid_actions for t in valid)
        report.generate_s = self.collector.last_stats.generate_time_s
        report.env_s = max(report.rollout_s - report.generate_s, 0.0)  # waiting for environments

    def _record_summaries(self, report: RoundReport) -> None:
        s0 = self.algo.s0
        mean = self.recorder.mean()
        report.sr_mean = 0.0 if np.isnan(mean) else float(mean)
        report.above_s0 = self.recorder.count_above(s0)
        report.solve_all, report.solve_none, report.solve_partial = self.recorder.solve_counts(report.task_counts)
        report.rates = self.recorder.rates

    # ------------------------------------------------------------------ SL-GRPO
    def _augment(self, policy: Any, pairs: Sequence[tuple[TrainingSample, SampleOrigin]]) -> list[TrainingSample]:
        """Alternatives for the steps of low-success tasks (ŝ_i ≤ s_low, record after this round's
        update, so first-round tasks qualify), scored against the original action a_t."""
        alternatives_per_step = num_alternatives(self.rollouts_per_task)
        origins = {id(sample): origin for sample, origin in pairs}
        selected = select_augmentation_steps([s for s, _ in pairs], self.recorder, self.algo.s_low)
        if not selected or alternatives_per_step == 0:
            return []
        prompts = [
            _generation_dialogue(sample.dialogue, self.algo.aug_suffix)
            for sample in selected
            for _ in range(alternatives_per_step)
        ]
        with self._inference(policy):
            generations = policy.generate(prompts, temperature=self.algo.aug_temperature)
        augmented: list[TrainingSample] = []
        for index, sample in enumerate(selected):
            group = generations[index * alternatives_per_step : (index + 1) * alternatives_per_step]
            origin = origins[id(sample)]
            original_action = origin.trajectory.turns[origin.turn_index].action
            alternatives = [(g, self._parse(g.text)) for g in group]
            rewards = self._env_rewards(origin, group) if self.algo.aug_reward == "env" else None
            augmented += augmentation_samples(
                sample,
                original_action,
                alternatives,
                self.algo.aug_reward,
                rewards=rewards,
                radius_px=self.algo.aug_radius_px,
                eps=self.algo.grpo_eps,
                weight=self.algo.aug_weight,
            )
        return augmented

    def _parse(self, text: str) -> Action | None:
        if self.parse_action is None:
            return None
        try:
            return self.parse_action(text)
        except ValueError:  # ActionParseError: an unparseable alternative gets reward 0
            return None

    def _env_rewards(self, origin: SampleOrigin, generations: Sequence[Any]) -> list[float]:
        """1 for an alternative whose execution from the saved state s_t reaches the same next state
        as the original action a_t, else 0 (`algo.aug_reward=env`)."""
        if self._local_env is None:
            self._local_env = self.make_env()
        env, trajectory, t = self._local_env, origin.trajectory, origin.turn_index
        env.reset(trajectory.task)
        for turn in trajectory.turns[:t]:
            env.step(turn.response)
        state = env.snapshot()
        target = env.step(trajectory.turns[t].response).observation.state_hash
        rewards = []
        for generation in generations:
            env.restore(state)
            result = env.step(generation.text)
            rewards.append(float(result.info.get("action_valid", False) and result.observation.state_hash == target))
        return rewards

    # ------------------------------------------------------------------ old log-probs and batches
    def _with_old_logprobs(self, policy: Any, samples: list[TrainingSample]) -> list[TrainingSample]:
        """log π_old on each sample's training context, right before the update (ALGORITHM.md §5).

        Every rank runs the same number of forward passes (padded with a sample that has no target
        token): with sharded parameters (FSDP FULL_SHARD, ZeRO-3) a forward is a collective call.
        """
        size = self.logprob_batch_size
        chunks = [samples[start : start + size] for start in range(0, len(samples), size)]
        chunks += [[] for _ in range(all_reduce_max([len(chunks)])[0] - len(chunks))]
        out = []
        for chunk in chunks:
            batch = self._to_device(policy.collate([s.dialogue for s in chunk or [self._padding_sample()]]), policy)
            logp, _ = policy.token_logprobs(batch)
            mask = batch["target_mask"]
            for row, sample in enumerate(chunk):
                values = logp[row][mask[row]].float().cpu().tolist()
                out.append(dataclasses.replace(sample, old_logprobs=tuple(values)))
        return out

    def _minibatches(self, samples: list[TrainingSample], epoch: int, rank: int) -> list[list[TrainingSample]]:
        """`ppo_epochs` shuffled passes cut into mini-batches; every rank gets the same number of
        mini-batches (padded with samples that carry no trainable token), and `batch_has_tokens`
        says which mini-batch indices carry a gradient on some rank."""
        rng = np.random.default_rng([self.seed, epoch, rank, 7])
        batches: list[list[TrainingSample]] = []
        for _ in range(self.algo.ppo_epochs):
            order = rng.permutation(len(samples))
            batches += [[samples[i] for i in order[s : s + self.batch_size]] for s in range(0, len(samples), self.batch_size)]
        count = max(all_reduce_max([len(batches)])[0], 1)
        batches += [[] for _ in range(count - len(batches))]
        batches = [batch or [self._padding_sample()] for batch in batches]
        local_flags = [int(any(s.old_logprobs for s in batch)) for batch in batches]
        self._batch_has_tokens = [bool(flag) for flag in all_reduce_max(local_flags)]
        return batches

    def _padding_sample(self) -> TrainingSample:
        """A sample with nothing to train on (keeps ranks in step; skipped by the optimiser)."""
        any_task = next(iter(self.tasks.values()))
        blank = np.zeros((self.screen_size[1], self.screen_size[0], 3), dtype=np.uint8)
        dialogue = Dialogue(any_task.instruction, [DialogueTurn(blank, response="wait()", trainable=False)])
        return TrainingSample(dialogue=dialogue, advantage=0.0, task_id=any_task.id, source="step", weight=0.0, old_logprobs=())

    def batch_has_tokens(self, batch_idx: int) -> bool:
        return self._batch_has_tokens[batch_idx] if batch_idx < len(self._batch_has_tokens) else True

    def collate(self, samples: list[TrainingSample]) -> dict[str, torch.Tensor]:
        """The policy's padded batch + old log-probs, advantages and weights aligned with it."""
        policy = self.trainer.lightning_module.policy
        batch = policy.collate([s.dialogue for s in samples])
        mask = batch["target_mask"]
        old_logp = torch.zeros(mask.shape, dtype=torch.float32)
        for row, sample in enumerate(samples):
            values = torch.tensor(sample.old_logprobs or (), dtype=torch.float32)
            if values.numel() != int(mask[row].sum()):
                raise RuntimeError(
                    f"Sample {row} has {values.numel()} old log-probs for {int(mask[row].sum())} target tokens: "
                    "the training context was tokenised differently from the old log-prob pass."
                )
            old_logp[row, mask[row]] = values
        batch["old_logp"] = old_logp
        if getattr(policy, "is_correction", "none") != "none":
            batch["rollout_logp"] = self._rollout_logprobs(samples, old_logp, mask)
        batch["advantages"] = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
        batch["weights"] = torch.tensor([s.weight for s in samples], dtype=torch.float32)
        return batch

    @staticmethod
    def _rollout_logprobs(samples: list[TrainingSample], old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The sampler's log-probs of every target token, aligned with old_logp (for the truncated
        importance-sampling correction); tokens the sampler did not produce (expert text) get
        old_logp, i.e. weight 1."""
        rollout_logp = old_logp.clone()
        for row, sample in enumerate(samples):
            values, complete = [], True
            for turn in sample.dialogue.turns:
                if turn.trainable:
                    complete &= bool(turn.response_logprobs) and len(turn.response_logprobs) == len(turn.response_ids)
                    values += list(turn.response_logprobs)
            if complete and len(values) == int(mask[row].sum()):
                rollout_logp[row, mask[row]] = torch.tensor(values, dtype=torch.float32)
        return rollout_logp

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, policy: Any, *, split: str = "test", greedy: bool = True, max_tasks: int | None = None, repeats: int = 1
    ) -> EvalResult:
        """`repeats` rollouts per task of `split` ("test": held-out, "train": the training tasks),
        each rank its share, with greedy or sampled decoding; counts are summed over ranks."""
        rank, world = rank_and_world()
        tasks = self.eval_tasks if split == "test" else list(self.tasks.values())
        tasks = (tasks[:max_tasks] if max_tasks else tasks) * repeats
        with self._inference(policy):
            trajectories = self.collector.collect(tasks[rank::world], policy, greedy=greedy, progress=self.progress)
        local = (
            sum(t.valid for t in trajectories),
            sum(t.valid and t.score >= self.algo.success_threshold for t in trajectories),
            sum(not t.valid for t in trajectories),
        )
        valid, successes, errors = (sum(values) for values in zip(*gather_objects(local)))
        return EvalResult(successes / valid if valid else 0.0, valid, successes, errors)

    # ------------------------------------------------------------------ helpers
    def _reseed_policy(self, policy: Any, epoch: int, rank: int) -> None:
        """Sampling randomness is a function of (seed, epoch, rank), so a resumed run samples
        exactly what an uninterrupted one would (with a deterministic pool)."""
        if hasattr(policy, "reseed"):
            policy.reseed(self.seed * 1_000_003 + epoch * 1_009 + rank)

    @staticmethod
    @contextmanager
    def _inference(policy: Any):
        was_training = policy.training
        policy.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            policy.train(was_training)

    @staticmethod
    def _to_device(batch: dict[str, Any], policy: Any) -> dict[str, Any]:
        device = next(policy.parameters()).device
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {
            "recorder": self.recorder.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "env_steps_total": self.env_steps_total,
            "next_round": self.next_round,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.recorder.load_state_dict(state_dict["recorder"])
        self.scheduler.load_state_dict(state_dict["scheduler"])
        self.env_steps_total = int(state_dict.get("env_steps_total", 0))
        self.next_round = int(state_dict.get("next_round", 0))

    def teardown(self, stage: str) -> None:
        if self._local_env is not None:
            self._local_env.close()
            self._local_env = None
