"""What the REAL `desktop_env` (PyPI `desktop-env`, installed with --no-deps) needs to run without a
VM: a VM double at the network level, a provider double, and stand-ins for the few modules that
cannot load without heavy extras.

Real code under test: `desktop_env.desktop_env.DesktopEnv` (constructor, reset with its retries,
step with its WAIT/DONE/FAIL rules and its `<` rewrite, evaluate with its infeasible rule),
`desktop_env.controllers.python.PythonController` and `desktop_env.controllers.setup.SetupController`
(set-up steps, downloads into the task cache, uploads). Replaced:

- the provider (`create_vm_manager_and_provider`): `Provider` starts nothing; with
  `signal_on_start=True` it installs SIGINT/SIGTERM handlers while "allocating", as OSWorld's AWS,
  Aliyun and Volcengine providers do (and so fails off a main thread, like them);
- the VM's HTTP server: `requests.get` / `requests.post` are answered by `VMServer` (screenshots,
  the accessibility tree, /execute, /setup/launch, /setup/upload) and by `files` for download URLs;
- only when they cannot be imported: `desktop_env.evaluators.metrics` / `getters` (their real
  modules import easyocr, librosa, playwright, ...: replaced by the few metrics and getters the test
  tasks use, with the real names and signatures), `playwright.sync_api`, `pydrive.*`.

`build_env(**kwargs)` is a module-level factory, so worker processes can build the same env.
"""

from __future__ import annotations

import importlib
import io
import json
import signal
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SCREEN = (280, 168)  # multiples of 28, so UI-TARS-1.5 absolute coordinates are the identity


def png(color: int, size: tuple[int, int] = SCREEN) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), color % 256, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# stand-ins for modules that need heavy extras (installed only when the real ones cannot import)
# ---------------------------------------------------------------------------------------------------


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    module.__stand_in__ = True  # type: ignore[attr-defined]
    return module


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _check_include_exclude(result: str, rules: dict[str, list[str]]) -> float:
    """OSWorld's metric of the same name (desktop_env/evaluators/metrics/general.py)."""
    if result is None:
        return 0.0
    include, exclude = rules.get("include", []), rules.get("exclude", [])
    return float(all(r in result for r in include) and not any(r in result for r in exclude))


def _get_cloud_file(env: Any, config: dict[str, Any]) -> str | list[str]:
    """OSWorld's getter of the same name, reduced to its cache lookup: the file must be in the
    task cache (the adapter fetched it); a download here would be the bug under test."""
    dests = config["dest"] if config.get("multi", False) else [config["dest"]]
    paths = [str(Path(env.cache_dir) / d) for d in dests]
    for path in paths:
        if not Path(path).exists():
            raise AssertionError(f"evaluate() would download {path} in place")
    return paths[0] if len(paths) == 1 else paths


def _compare_bytes(result: str, expected: dict[str, Any]) -> float:
    return float(Path(result).read_bytes() == expected["bytes"].encode())


def install_stand_ins() -> list[str]:
    """Put stand-ins in sys.modules for the modules that cannot load here; returns their names."""
    installed = []
    if not _importable("playwright.sync_api"):
        sys.modules["playwright"] = _module("playwright")
        sys.modules["playwright.sync_api"] = _module("playwright.sync_api", sync_playwright=None, TimeoutError=TimeoutError)
        installed.append("playwright")
    if not _importable("pydrive.drive"):
        sys.modules["pydrive"] = _module("pydrive")
        sys.modules["pydrive.auth"] = _module("pydrive.auth", GoogleAuth=None)
        sys.modules["pydrive.drive"] = _module("pydrive.drive", GoogleDrive=None, GoogleDriveFile=None, GoogleDriveFileList=None)
        installed.append("pydrive")
    if not _importable("desktop_env.evaluators.metrics"):
        for name in [n for n in sys.modules if n.startswith("desktop_env.evaluators")]:
            del sys.modules[name]
        evaluators = importlib.import_module("desktop_env.evaluators")  # its __init__ imports nothing
        metrics = _module(
            "desktop_env.evaluators.metrics",
            infeasible=lambda: None,
            check_include_exclude=_check_include_exclude,
            compare_bytes=_compare_bytes,
        )
        metrics.utils = _module("desktop_env.evaluators.metrics.utils", compare_urls=lambda a, b, **k: a == b)  # type: ignore[attr-defined]
        getters = _module(
            "desktop_env.evaluators.getters",
            get_rule=lambda env, config: config["rules"],
            get_cloud_file=_get_cloud_file,
            get_vm_command_line=lambda env, config: VMServer.current.command_output(config),
        )
        sys.modules.update({
            "desktop_env.evaluators.metrics": metrics,
            "desktop_env.evaluators.metrics.utils": metrics.utils,  # type: ignore[attr-defined]
            "desktop_env.evaluators.getters": getters,
        })  # fmt: skip
        evaluators.metrics, evaluators.getters = metrics, getters  # type: ignore[attr-defined]
        installed.append("desktop_env.evaluators")
    return installed


# ---------------------------------------------------------------------------------------------------
# the VM double: its HTTP server and its provider
# ---------------------------------------------------------------------------------------------------


class Response:
    """The parts of requests.Response that desktop_env reads."""

    def __init__(self, status_code: int = 200, content: bytes = b"", content_type: str = "application/json", chunk_delay_s: float = 0.0):
        self.status_code, self.content, self.headers = status_code, content, {"Content-Type": content_type, "content-length": str(len(content))}
        self.chunk_delay_s = chunk_delay_s

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            import requests

            raise requests.HTTPError(f"{self.status_code}")

    def iter_content(self, chunk_size: int = 8192):
        for start in range(0, len(self.content), 4):  # small chunks: a slow download
            time.sleep(self.chunk_delay_s)
            yield self.content[start : start + 4]


class VMServer:
    """The VM's HTTP server (OSWorld's server/main.py endpoints the code under test calls) plus the
    internet: `files` maps download URLs to their bytes."""

    current: VMServer | None = None

    def __init__(self, files: dict[str, bytes] | None = None, chunk_delay_s: float = 0.0, a11y: str | None = None):
        self.files = dict(files or {})
        self.chunk_delay_s = chunk_delay_s
        self.a11y = a11y
        self.executed: list[list[str]] = []  # /execute command lists (["python", "-c", code])
        self.uploads: dict[str, bytes] = {}  # VM path -> bytes received by /setup/upload
        self.launched: list[Any] = []
        self.downloads: list[str] = []  # URLs fetched from the "internet"
        self.screen_color = 0
        self.lock = threading.Lock()

    def install(self, monkeypatch: Any = None) -> VMServer:
        import requests

        VMServer.current = self
        for name, fn in (("get", self.get), ("post", self.post)):
            if monkeypatch is not None:
                monkeypatch.setattr(requests, name, fn)
            else:
                setattr(requests, name, fn)
        return self

    def get(self, url: str, **kwargs: Any) -> Response:
        if url.startswith("http://vm-"):
            endpoint = "/" + url.split("/", 3)[3]
            if endpoint == "/screenshot":
                return Response(content=png(self.screen_color), content_type="image/png")
            if endpoint == "/accessibility":
                return Response(content=json.dumps({"AT": self.a11y}).encode())
            if endpoint == "/terminal":
                return Response(content=json.dumps({"output": ""}).encode())
            return Response(404)
        with self.lock:
            self.downloads.append(url)
        if url not in self.files:
            return Response(404)
        return Response(content=self.files[url], content_type="application/octet-stream", chunk_delay_s=self.chunk_delay_s)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> Response:  # noqa: A002 - requests' name
        import json as _json

        endpoint = "/" + url.split("/", 3)[3]
        if endpoint == "/execute":
            command = _json.loads(data)["command"]
            with self.lock:
                self.executed.append(command)
                self.screen_color += 1  # every action changes the screen
            return Response(content=_json.dumps({"status": "success", "output": "", "error": "", "returncode": 0}).encode())
        if endpoint == "/setup/launch":
            self.launched.append(_json.loads(data)["command"])
            return Response(content=b"{}")
        if endpoint == "/setup/open_file":
            self.launched.append(["open", _json.loads(data)["path"]])
            return Response(content=b"{}")
        if endpoint == "/setup/upload":
            fields = data.fields  # a requests_toolbelt MultipartEncoder
            name, handle = fields["file_data"]
            with handle:
                self.uploads[fields["file_path"]] = handle.read()
            return Response(content=b"{}")
        return Response(404)

    def command_output(self, config: dict[str, Any]) -> str:
        """What `get_vm_command_line` reads: here, every pyautogui command run so far."""
        return "\n".join(c[-1] for c in self.executed)


class Provider:
    """OSWorld's Provider interface; records what it was asked to do."""

    signal_on_start = False
    events: list[str] = []

    def __init__(self, region: str | None = None):
        self.region = region

    def start_emulator(self, path_to_vm: str, headless: bool, os_type: str = "Ubuntu") -> None:
        if self.signal_on_start:  # what OSWorld's AWS / Aliyun / Volcengine allocation does
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, lambda *a: None)
            signal.signal(signal.SIGTERM, previous)
        Provider.events.append(f"start {path_to_vm}")

    def get_ip_address(self, path_to_vm: str) -> str:
        return "vm-1:5000:9222:8006:8080"

    def save_state(self, path_to_vm: str, snapshot_name: str) -> None:
        Provider.events.append(f"save {snapshot_name}")

    def revert_to_snapshot(self, path_to_vm: str, snapshot_name: str) -> str:
        Provider.events.append(f"revert {snapshot_name}")
        return path_to_vm

    def stop_emulator(self, path_to_vm: str, region: str | None = None) -> None:
        Provider.events.append(f"stop {path_to_vm}")
        marker = getattr(Provider, "stop_marker", None)
        if marker:
            with open(marker, "a") as out:
                out.write(f"stop {path_to_vm}\n")


class Manager:
    """OSWorld's VMManager interface."""

    def get_vm_path(self, os_type: str, region: str | None, screen_size: tuple[int, int] = SCREEN, **kwargs: Any) -> str:
        return "vm-image-1"

    def delete_vm(self, *args: Any, **kwargs: Any) -> None: ...

    def add_vm(self, *args: Any, **kwargs: Any) -> None: ...

    def occupy_vm(self, *args: Any, **kwargs: Any) -> None: ...


def install_provider(signal_on_start: bool = False, stop_marker: str | None = None) -> None:
    """Replace OSWorld's provider factory (the part that needs Docker/KVM or a cloud account)."""
    import desktop_env.desktop_env as module

    Provider.signal_on_start = signal_on_start
    Provider.stop_marker = stop_marker  # type: ignore[attr-defined]

    def create_vm_manager_and_provider(provider_name: str, region: str, use_proxy: bool = False):
        return Manager(), Provider(region)

    module.create_vm_manager_and_provider = create_vm_manager_and_provider


def build_env(
    vm: dict[str, Any] | None = None,
    signal_on_start: bool = False,
    stop_marker: str | None = None,
    **kwargs: Any,
):
    """A real OSWorldEnv over the real DesktopEnv with only the VM replaced (for worker processes)."""
    install_stand_ins()
    VMServer(**(vm or {})).install()
    install_provider(signal_on_start, stop_marker)
    from steprl.envs import make

    return make("osworld", **kwargs)
