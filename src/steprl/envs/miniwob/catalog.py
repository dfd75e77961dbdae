"""The MiniWoB++ tasks steprl trains on, their difficulty, and the seeds that make task instances.

A task instance is one MiniWoB++ task name plus one seed: `Math.seedrandom(seed)` before the
episode makes the page generate the same problem (utterance, layout, values) every time. The
train and test splits use disjoint seeds of the same task names (train: `base .. base+n_train-1`,
test: the next `n_test` integers, with `base = 100_000 · task_seed`), and each split also sets
MiniWoB's data mode ("train" / "test"), which a few tasks use to pick their problem templates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MiniWoBTask:
    """One MiniWoB++ task name with its difficulty on steprl's 1..5 scale.

    Difficulty: 1 = one click; 2 = two or three steps on one screen; 3 = a short form or a hidden
    target (several fields, tabs); 4 = dynamic widgets or fuzzy matching; 5 = long multi-screen work.
    `expert` says whether `MiniWoBEnv.expert_response` can solve it.
    """

    name: str
    difficulty: int
    expert: bool


#: The default task list, easiest first (graded like MiniDesk's 1..5 scale).
CATALOG: tuple[MiniWoBTask, ...] = (
    MiniWoBTask("click-test", 1, True),
    MiniWoBTask("click-test-2", 1, True),
    MiniWoBTask("click-button", 1, True),
    MiniWoBTask("click-link", 1, True),
    MiniWoBTask("focus-text", 1, True),
    MiniWoBTask("click-dialog", 1, True),
    MiniWoBTask("focus-text-2", 2, True),
    MiniWoBTask("click-dialog-2", 2, True),
    MiniWoBTask("click-option", 2, True),
    MiniWoBTask("click-button-sequence", 2, True),
    MiniWoBTask("enter-text", 2, True),
    MiniWoBTask("click-collapsible", 2, False),
    MiniWoBTask("click-checkboxes", 3, True),
    MiniWoBTask("enter-text-2", 3, True),
    MiniWoBTask("enter-password", 3, True),
    MiniWoBTask("login-user", 3, True),
    MiniWoBTask("click-tab-2", 3, True),
    MiniWoBTask("use-autocomplete", 4, True),
    MiniWoBTask("multi-layouts", 4, True),
    MiniWoBTask("click-checkboxes-soft", 4, False),
    MiniWoBTask("email-inbox", 5, False),
    MiniWoBTask("book-flight", 5, False),
)
CATALOG_BY_NAME = {task.name: task for task in CATALOG}
#: Difficulty of a task that is not in the catalog (any other MiniWoB++ task name works too).
UNLISTED_DIFFICULTY = 3
#: Seeds of one split live in [base, base + SEED_STRIDE) with base = SEED_STRIDE · task_seed.
SEED_STRIDE = 100_000
SPLITS = ("train", "test")


def task_difficulty(name: str) -> int:
    """Difficulty of task `name` (catalog value, or UNLISTED_DIFFICULTY)."""
    spec = CATALOG_BY_NAME.get(name)
    return spec.difficulty if spec is not None else UNLISTED_DIFFICULTY


def split_seeds(
    split: str, seeds_per_task: int, test_seeds_per_task: int, task_seed: int, first_test_seed: int | None = None
) -> list[int]:
    """The page seeds of a split: train = base .. base+n_train-1, test = n_test integers from
    base + `first_test_seed` (default: right after the training seeds).

    E.g. task_seed=0, 3 train and 2 test seeds: train [0, 1, 2], test [3, 4] (disjoint by
    construction, so no test problem is ever trained on). `first_test_seed` keeps the test seeds
    where they were when fewer training seeds are used than a warm start was demonstrated on
    (4 train seeds, first_test_seed=12: train [0..3], test [12, 13, ...]); it may not fall inside
    the training seeds.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    first = seeds_per_task if first_test_seed is None else int(first_test_seed)
    if first < seeds_per_task:
        raise ValueError(f"first_test_seed ({first}) must be >= seeds_per_task ({seeds_per_task}): test seeds may not be trained on")
    if first + test_seeds_per_task > SEED_STRIDE:
        raise ValueError(f"first_test_seed + test_seeds_per_task must be <= {SEED_STRIDE}")
    base = SEED_STRIDE * int(task_seed)
    if split == "train":
        return list(range(base, base + seeds_per_task))
    return list(range(base + first, base + first + test_seeds_per_task))


def task_id(name: str, seed: int) -> str:
    """The id of one task instance: "<task name>/<seed>" (e.g. "click-test/3")."""
    return f"{name}/{seed}"


def score_from_reward(reward: float) -> float:
    """MiniWoB++ reward in [-1, 1] -> steprl score in [0, 1]: max(0, reward), clipped at 1.

    MiniWoB gives -1 for a wrong submission or a timeout, 0 while the episode runs, and a value in
    (0, 1] for a (partially) right one; a failure and "not done" both map to 0.
    """
    return min(1.0, max(0.0, float(reward)))
