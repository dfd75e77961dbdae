"""The OSWorld / AndroidWorld install path: desktop-env without its (conflicting) dependencies, plus
an explicit list of what its modules import; the extras in pyproject.toml are those lists.

`test_the_install_path_resolves` asks pip's resolver (network, so opt-in: STEPRL_NETWORK_TESTS=1);
the other tests are offline and fail when a desktop_env release imports a module the lists miss."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"

#: import name -> distribution, for every third-party module desktop_env 1.0.2 imports at load time
#: in the modules a Docker / VMware / VirtualBox run loads (cloud provider SDKs are documented apart).
IMPORT_TO_DIST = {
    "PIL": "Pillow", "PyPDF2": "PyPDF2", "acoustid": "pyacoustid", "borb": "borb", "bs4": "beautifulsoup4",
    "cv2": "opencv-python-headless", "docker": "docker", "docx": "python-docx", "dotenv": "python-dotenv",
    "easyocr": "easyocr", "fastdtw": "fastdtw", "filelock": "filelock", "fitz": "PyMuPDF", "formulas": "formulas",
    "gymnasium": "gymnasium", "imagehash": "ImageHash", "librosa": "librosa", "lxml": "lxml", "mutagen": "mutagen",
    "numpy": "numpy", "odf": "odfpy", "openpyxl": "openpyxl", "pandas": "pandas", "pdfplumber": "pdfplumber",
    "playwright": "playwright", "pptx": "python-pptx", "psutil": "psutil", "pydrive": "PyDrive", "pypdf": "pypdf",
    "pytz": "pytz", "rapidfuzz": "rapidfuzz", "requests": "requests", "requests_toolbelt": "requests-toolbelt",
    "scipy": "scipy", "skimage": "scikit-image", "tldextract": "tldextract", "tqdm": "tqdm",
    "xmltodict": "xmltodict", "yaml": "PyYAML",
}  # fmt: skip
STEPRL_PROVIDES = {"Pillow", "numpy"}  # steprl's own dependencies
CLOUD_PROVIDERS = ("aws", "azure", "aliyun", "volcengine", "gcp")


def requirement_names(path: Path) -> list[str]:
    """Distribution names of a requirements file, following `-r` includes."""
    names: list[str] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names += requirement_names(path.parent / line[2:].strip())
        elif line:
            names.append(line.split("==")[0].split(">")[0].split("<")[0].strip())
    return names


def extra(name: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [r.split("==")[0].split(">")[0].split("<")[0].strip() for r in project["optional-dependencies"][name]]


def test_the_extras_are_the_requirement_lists():
    assert sorted(extra("osworld")) == sorted(requirement_names(REQUIREMENTS / "osworld-runtime.txt"))
    assert sorted(extra("android")) == sorted(requirement_names(REQUIREMENTS / "android-runtime.txt"))
    assert all("desktop-env" not in r for r in extra("osworld"))  # it is installed with --no-deps
    assert requirement_names(REQUIREMENTS / "osworld.txt") == ["desktop-env"]


def desktop_env_imports() -> dict[str, set[str]]:
    """Top-level third-party imports of each installed desktop_env module (what loading it needs)."""
    import desktop_env  # noqa: F401 - skip when missing (the caller checks)

    package = Path(sys.modules["desktop_env"].__file__).parent
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        if any(f"providers/{p}/" in relative for p in CLOUD_PROVIDERS):
            continue
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])  # fmt: skip
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "desktop_env":
                    found.setdefault(top, set()).add(relative)
    return found


def test_every_module_desktop_env_imports_is_in_the_runtime_list():
    pytest.importorskip("desktop_env", reason="desktop-env is not installed: pip install --no-deps -r requirements/osworld.txt")
    listed = set(requirement_names(REQUIREMENTS / "osworld-runtime.txt")) | STEPRL_PROVIDES
    missing = {name: sorted(where)[:3] for name, where in desktop_env_imports().items() if IMPORT_TO_DIST.get(name) not in listed}
    assert not missing, f"desktop_env imports modules no requirement provides: {missing}"


def test_the_test_list_covers_what_the_osworld_tests_load():
    """What test_env_osworld.py loads for real (desktop_env.py, controllers, the aws proxy pool that
    setup.py imports) needs only requirements/osworld-test.txt (+ steprl's own dependencies)."""
    pytest.importorskip("desktop_env", reason="desktop-env is not installed: pip install --no-deps -r requirements/osworld.txt")
    listed = set(requirement_names(REQUIREMENTS / "osworld-test.txt")) | STEPRL_PROVIDES
    loaded = ("desktop_env.py", "controllers/python.py", "controllers/setup.py", "providers/base.py", "actions.py")
    stand_ins = {"playwright", "pydrive"}  # tests/fakes/osworld_vm.py replaces them when missing
    for name, where in desktop_env_imports().items():
        if where & set(loaded) and name not in stand_ins:
            assert IMPORT_TO_DIST[name] in listed, (name, where)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("STEPRL_NETWORK_TESTS") != "1", reason="asks the package index: set STEPRL_NETWORK_TESTS=1")
def test_the_install_path_resolves(tmp_path):
    """pip's resolver accepts steprl + the runtime lists (desktop-env itself goes in with --no-deps)."""
    for requirements in ("osworld-runtime.txt", "android-runtime.txt"):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-e", str(ROOT), "-r", str(REQUIREMENTS / requirements)],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert done.returncode == 0 and "Would install" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-r", str(REQUIREMENTS / "osworld.txt")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and "desktop-env-1.0.2" in done.stdout, done.stdout + done.stderr
