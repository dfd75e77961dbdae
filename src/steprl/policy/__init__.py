"""The VLM policy: prompt templates, model inputs, the policy module, the tiny model, warm start.

Nothing here imports an environment (docs/architecture.md, dependency direction): the policy reads
`Dialogue`s and returns `Generation`s; warm start reads `TrainingSample`s.
"""

from steprl.policy.prompts import TEMPLATES, PromptTemplate, add_box_tokens, build_messages, get_template
from steprl.policy.tiny import build_tiny_checkpoint
from steprl.policy.vlm import CheckpointError, VLMPolicy
from steprl.policy.warmstart import WarmStartResult, warm_start

__all__ = [
    "TEMPLATES",
    "CheckpointError",
    "PromptTemplate",
    "VLMPolicy",
    "WarmStartResult",
    "add_box_tokens",
    "build_messages",
    "build_tiny_checkpoint",
    "get_template",
    "warm_start",
]
