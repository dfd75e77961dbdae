"""OSWorldEnv: OSWorld desktop tasks (xlang-ai/OSWorld, PyPI `desktop-env`) behind the GUIEnv protocol.

Keyword arguments (conf/env/osworld.yaml documents each):

- osworld_root: a git checkout of xlang-ai/OSWorld (the tasks live only there: `pip install
  desktop-env` installs the environment without them). Task JSONs are read from
  `<osworld_root>/<examples_dir>/<domain>/<id>.json`.
- train_index / test_index: which tasks form each split. Relative paths are under osworld_root.
  Accepted formats: an OSWorld index JSON `{"domain": ["id", ...], ...}` (like
  evaluation_examples/test_all.json), a JSON list of "domain/id" or "id" strings, or a text file
  with one "domain/id" or "id" per line (`#` starts a comment). A bare id is looked up in every
  domain. train_index = null trains on the test index's tasks (OSWorld has no training split; the
  paper's 128-task subset, like ARPO's, is a subset of the test tasks).
- domains: keep only these domains (null = all).
- provider_name, path_to_vm, region, snapshot_name, screen_size, headless, os_type, cache_dir,
  client_password, enable_proxy, require_terminal: passed to `DesktopEnv` (action_space is always
  "pyautogui"; require_a11y_tree follows `observation`).
- observation: "screenshot" | "a11y" | "both" (a11y = OSWorld's accessibility tree, linearised
  and cut at a11y_max_chars, see steprl.envs.osworld.a11y).
- coords / model_image_size: the policy's coordinate convention (see steprl.actions).
- max_steps: step budget per episode (ARPO: 15).
- pause_s: OSWorld's `step(pause=...)`, the wait after each action before the screenshot (ARPO 0.5).
- wait_s: what wait() waits (the UI-TARS prompt promises 5 s).
- multi_action: "all" runs every action of a response (OSWorld's UI-TARS agent, ARPO), "first"
  the first only; one turn either way.
- exclude_credential_tasks: leave out tasks whose set-up or evaluation needs Google Drive
  credentials (their ids: `OSWorldEnv.excluded[split]`; the count is logged).
- sleep_after_reset_s / sleep_before_evaluate_s: waits OSWorld's own evaluation harness uses
  (60 s after reset for the apps to open, 20 s before evaluate for files to settle).
- download_timeout_s: per task file fetched into cache_dir before reset (steprl.envs.osworld.cache).
- Time limits are not env settings: the collector's reset/step/evaluate timeouts are enforced by
  the env worker, which stops the VM when one fires (steprl.rollout.workers). DesktopEnv is built
  and reset in the calling thread: cloud providers install signal handlers while they allocate.

The VM starts on the first `reset()` (building the env and listing tasks start nothing), one VM
per env instance, i.e. one per rollout worker. OSWorld scores a task only through `evaluate()`:
step rewards are always 0. Infeasible tasks (evaluator func "infeasible") score 1 only when the
last action was FAIL, which is what call_user() sends; `Task.feasible` is False for them.
"""

from steprl.envs.osworld.env import OSWorldEnv

__all__ = ["OSWorldEnv"]
