"""MiniDesk: an embedded, deterministic synthetic desktop for GUI-agent RL on CPU.

Pure Python + numpy + pillow: apps with fixed layouts (buttons, checkboxes, text fields, menus
and submenus, a scrollable list, tabs, a confirmation dialog, desktop icons, drag and drop,
keyboard shortcuts), 13 task families of graded difficulty, a train split and a disjoint held-out
split, a scripted expert, snapshot/restore, simulated latency and fault injection.

Files, one job each: catalog (the world's fixed content), widgets (element records, hit testing,
a11y text), state (logical state, hash), layout (where everything is), dynamics (how actions
change the state), render (screenshots), goals (instructions and scores), tasks (families and
splits), expert (scripted expert), faults (latency, injected faults), env (MiniDeskEnv), demos
(expert demonstrations).

`MiniDeskEnv(**kwargs)` keyword arguments: screen_size=(448, 280), observation="screenshot" |
"a11y" | "both", coords="absolute" | "relative1000", model_image_size=None, max_steps=15,
num_train_tasks=128, num_test_tasks=64, task_seed=0, families=None, step_latency_s,
reset_latency_s, latency_jitter, fault_step_raise_prob, fault_step_hang_prob,
fault_reset_raise_prob, fault_reset_hang_prob, fault_hang_s=3600, fault_seed=0.
"""

from steprl.envs.minidesk.demos import collect_expert_demonstrations
from steprl.envs.minidesk.env import MiniDeskEnv, MiniDeskSnapshot
from steprl.envs.minidesk.faults import InjectedFault
from steprl.envs.minidesk.tasks import FAMILY_NAMES

__all__ = ["FAMILY_NAMES", "InjectedFault", "MiniDeskEnv", "MiniDeskSnapshot", "collect_expert_demonstrations"]
