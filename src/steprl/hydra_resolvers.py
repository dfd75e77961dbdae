"""OmegaConf resolvers used by conf/ (registered by train.py before Hydra composes the config)."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf


def short_dirname(name: str, limit: int = 120) -> str:
    """A multirun job's folder name from its overrides, safe for the file system: '/' becomes '_'
    (a value that is a path must not nest folders), and a name longer than `limit` characters is
    cut and ends with a hash of the whole name (file names stop at 255 bytes; Hydra would fail the
    whole multirun on a longer one)."""
    name = name.replace("/", "_")
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def register() -> None:
    OmegaConf.register_new_resolver("steprl.short", short_dirname, replace=True)
