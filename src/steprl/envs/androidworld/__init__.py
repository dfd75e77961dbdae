"""AndroidWorldEnv: AndroidWorld tasks on Android emulators (google-research/android_world).

Keyword arguments (conf/env/androidworld.yaml documents each):

- task_family: an AndroidWorld registry family ("android_world" = the 116-task suite, "android",
  "information_retrieval", ...); tasks: keep only these task names (null = all).
- n_task_combinations / task_random_seed: parameterised instances per task name, made as
  AndroidWorld's `suite_utils.create_suite` makes them (instance i of task `name` seeds Python's
  `random` with sha256(f"{seed}_{name}_{i}") mod 2**32, then calls `generate_random_params()`).
- test_fraction / split_seed: the train/test split is a split of task NAMES: the names are sorted,
  shuffled with random.Random(split_seed), and the first round(test_fraction · n) are the test
  tasks (so no test task is trained on, whatever its parameters). test_fraction 0 -> empty test.
- console_port / grpc_port / adb_path / emulator_setup / freeze_datetime: passed to
  `env_launcher.load_and_setup_env` (adb_path null = AndroidWorld's default).
- emulator_slot / num_emulators / console_port_stride / grpc_port_stride: one emulator per worker.
  Worker slot s = emulator_slot mod num_emulators connects to console_port + s·console_port_stride
  and grpc_port + s·grpc_port_stride (emulators started with `-port 5554 -grpc 8554`, `-port 5556
  -grpc 8555`, ...). conf/env/androidworld.yaml makes emulator_slot the worker seed key, so the
  rollout pool gives each worker (and each restart of it) its own slot; set num_emulators to the
  pool's num_workers.
- screen_size: the emulator's logical screen (width, height) (Pixel 6: 1080x2400); checked when
  the emulator connects.
- observation: "screenshot" | "a11y" | "both" (a11y = the UI elements, one per line).
- coords / model_image_size: the policy's coordinate convention (see steprl.actions).
- max_steps: budget for tasks without a complexity; otherwise Task.max_steps = int(10·complexity)
  (AndroidWorld's `_allocate_step_budget`).
- transition_pause_s: pause after an action before the next screen; null = wait until the UI is
  stable (`get_state(wait_to_stabilize=True)`, what AndroidWorld's run.py does for these tasks).
- score_requires_done: AndroidWorld counts a success only if the agent ended the episode itself
  (finished / call_user); false scores `is_successful` whatever ended the episode.

The emulator connects on the first reset (building the env and listing tasks touch no device).
UI-TARS actions map to JSONAction, or to AndroidWorld's adb_utils where a JSONAction would change
what the model asked, as `json_actions` documents: drag swipes between the model's two points;
type taps the focused field, then types the text as written (Enter only for "\n"); a scroll
at a point swipes inside the scrollable element the model saw under it.
"""

from steprl.envs.androidworld.env import AndroidWorldEnv

__all__ = ["AndroidWorldEnv"]
