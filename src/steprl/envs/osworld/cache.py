"""OSWorld task files, fetched whole before DesktopEnv looks for them.

DesktopEnv keeps the files of task `id` in `<cache_dir>/<id>/` and downloads a missing one in
place (`open(path, "wb")`, then chunks), with no lock. Two resets of one task at once (the N
rollouts of a group) or a worker killed mid-download leave a half-written file under the final
name, and every later episode uploads it to the VM as if it were whole.

So the adapter fetches every file a task will ask for BEFORE calling `DesktopEnv.reset`: under a
per-file lock (one download per file, whatever the number of workers), into a temporary file beside
the target, renamed into place only when complete. DesktopEnv then finds each file present and
whole. A temporary file of a killed worker has another name and is never read.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock


@dataclass(frozen=True)
class CachedFile:
    """One file a task needs: where DesktopEnv will look for it, and where it comes from."""

    url: str
    path: Path


def task_cache_dir(cache_dir: str | Path, task_json: dict[str, Any]) -> Path:
    """DesktopEnv's folder for one task's files: <cache_dir>/<task id>."""
    return Path(cache_dir) / str(task_json["id"])


def task_files(cache_dir: str | Path, task_json: dict[str, Any]) -> list[CachedFile]:
    """Every file DesktopEnv downloads for this task, under the names it will look for:
    `download` set-up steps (<uuid5(url)>_<basename of the VM path>) and the evaluator's
    `cloud_file` getters (<dest>)."""
    folder = task_cache_dir(cache_dir, task_json)
    files = [
        CachedFile(str(f["url"]), folder / f"{uuid.uuid5(uuid.NAMESPACE_URL, str(f['url']))}_{os.path.basename(str(f['path']))}")
        for step in task_json.get("config") or []
        if isinstance(step, dict) and step.get("type") == "download"
        for f in (step.get("parameters") or {}).get("files", [])
        if f.get("url") and f.get("path")
    ]
    evaluator = task_json.get("evaluator") or {}
    for getter in _getters(evaluator.get("result")) + _getters(evaluator.get("expected")):
        if getter.get("type") == "cloud_file":
            urls, dests = getter.get("path"), getter.get("dest")
            if not getter.get("multi", False):
                urls, dests = [urls], [dests]
            files += [CachedFile(str(u), folder / str(d)) for u, d in zip(urls or [], dests or []) if u and d]
    return files


def _getters(entry: Any) -> list[dict[str, Any]]:
    entries = entry if isinstance(entry, list) else [entry]
    return [e for e in entries if isinstance(e, dict)]


def fetch_task_files(cache_dir: str | Path, task_json: dict[str, Any], timeout_s: float = 300.0) -> list[Path]:
    """Make every file of the task present and whole in the cache; returns their paths.

    Concurrent callers (threads, processes, machines sharing the folder) download each file once;
    the others wait on its lock and then find it complete.
    """
    folder = task_cache_dir(cache_dir, task_json)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in task_files(cache_dir, task_json):
        with FileLock(str(item.path) + ".lock"):
            if not item.path.exists():
                download_atomically(item.url, item.path, timeout_s)
        paths.append(item.path)
    return paths


def download_atomically(url: str, path: Path, timeout_s: float = 300.0) -> None:
    """GET `url` into a temporary file beside `path`, then rename it to `path` (atomic on one
    filesystem): `path` never exists half-written."""
    import requests  # a dependency of desktop-env; imported here so listing tasks needs nothing

    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out:
            response = requests.get(url, stream=True, timeout=timeout_s)
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=1 << 16):
                if chunk:
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def stale_partials(cache_dir: str | Path) -> Iterator[Path]:
    """Temporary files left by killed workers (safe to delete when no run is using the cache)."""
    return Path(cache_dir).glob("*/.*.partial")
