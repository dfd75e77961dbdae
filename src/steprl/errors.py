"""Every error a user of steprl can meet, in one place.

Each layer raises these (and re-exports the ones it owns for backwards compatibility), so no layer
imports another only for an exception class. Every message says what went wrong and what to do.
This module imports nothing from steprl: any layer may import it.
"""

from __future__ import annotations


class SteprlError(Exception):
    """Base of steprl's own errors (catch this to tell them from bugs)."""


# ------------------------------------------------------------------------------------ configuration
class ConfigError(SteprlError, ValueError):
    """A config value the run cannot use (the message names the key and what to do)."""


class MissingDependencyError(SteprlError, ImportError):
    """An optional dependency of an environment (or other component) is not installed."""

    def __init__(self, component: str, package: str, install: str):
        super().__init__(
            f"{component} needs the optional package '{package}', which is not installed. "
            f"Install it with: {install}"
        )


# ------------------------------------------------------------------------------------ checkpoints
class CheckpointError(SteprlError, OSError):
    """A policy or training checkpoint cannot be found or loaded; the message says what to do."""


# ------------------------------------------------------------------------------------ model output
class ActionParseError(SteprlError, ValueError):
    """A model response that is not one valid UI-TARS action; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------------ environments
class EnvPoolError(SteprlError, RuntimeError):
    """The env pool cannot do what was asked (workers do not start, bad configuration, closed pool)."""


class RolloutError(SteprlError, RuntimeError):
    """Collection cannot go on (no healthy env worker left, a policy that breaks its contract)."""


class RunFailedError(SteprlError, RuntimeError):
    """The run could not do its job (e.g. a round with no valid trajectory): it stops, non-zero."""


# ------------------------------------------------------------------------------------ engines
class WeightSyncError(SteprlError, RuntimeError):
    """vLLM does not serve the weights being trained (the message says how far off, and why)."""


class PromptMismatchError(SteprlError, RuntimeError):
    """vLLM built a different prompt from the one the trainer will train on."""


# ------------------------------------------------------------------------------------ analysis
class RunDirError(SteprlError, ValueError):
    """A path given as a run or sweep directory is neither (the message says what was expected)."""
