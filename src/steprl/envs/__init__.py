"""GUI environments behind one protocol (see `base.py`)."""

from steprl.envs.base import GUIEnv, MissingDependencyError, available, build, make, register, resolve

__all__ = ["GUIEnv", "MissingDependencyError", "available", "build", "make", "register", "resolve"]
