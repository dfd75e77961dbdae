"""GUI environments behind one protocol (see `base.py`)."""

from steprl.envs.base import GUIEnv, MissingDependencyError, available, make, register

__all__ = ["GUIEnv", "MissingDependencyError", "available", "make", "register"]
