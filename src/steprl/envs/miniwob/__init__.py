"""MiniWoB++ (Farama `miniwob`): small real web tasks in a local headless Chromium, on CPU.

`MiniWoBEnv(**kwargs)` (registry name "miniwob"; optional extra `[miniwob]` = miniwob + selenium,
plus Debian's `chromium` and `chromium-driver`):

- tasks: MiniWoB++ task names (default: `catalog.CATALOG`, 22 tasks graded 1..5 from click-test to
  book-flight); seeds_per_task / test_seeds_per_task / task_seed: page seeds of the train and test
  splits (disjoint; see catalog.split_seeds); first_test_seed: where the test seeds start (default:
  right after the training seeds). A task instance is (name, seed), id "name/seed".
- observation: "screenshot" (the 160x210 task area, RGB uint8) | "both" (+ DOM text as a11y) |
  "a11y" (DOM text, blank screenshot).
- coords / model_image_size: the policy's coordinate convention (see steprl.actions).
- max_steps: step budget per episode.
- reward: "raw" (default; the page's reward without time decay) | "decayed" (MiniWoB's reward,
  scaled by the time left). Score = max(0, reward) clipped to [0, 1] (catalog.score_from_reward).
- episode_time_limit_s: null keeps each page's limit (10 s for most tasks; the page then ends the
  episode with reward -1); set it higher when the policy is slow.
- wait_s: how long wait() pauses.
- chrome_binary / chromedriver: the browser and driver binaries (Debian paths by default).

The score comes from the page itself: MiniWoB ends its episode when the task is submitted (or
times out), and `evaluate()` reads that reward; `finished()` / `call_user()` end steprl's episode
without touching the page. `expert_response()` is a scripted expert for `expert.EXPERT_TASKS`.
"""

from steprl.envs.miniwob.env import MiniWoBEnv

__all__ = ["MiniWoBEnv"]
