"""algo/ is pure: numpy, torch tensors, the standard library, steprl.types and steprl.algo only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ALGO_DIR = Path(__file__).resolve().parents[2] / "src" / "steprl" / "algo"
ALLOWED_THIRD_PARTY = {"numpy", "torch"}
ALLOWED_STEPRL = ("steprl.types", "steprl.algo")


def imported_modules(source: str, package: str = "steprl.algo") -> list[str]:
    """Every module (or module.name) an import statement names, anywhere in the file (functions
    included); relative imports resolved against `package`. `from x import y` gives "x.y", so
    `from steprl import policy` is caught as "steprl.policy"."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbidden(module: str) -> bool:
    top = module.split(".")[0]
    if top == "steprl":
        return not any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_STEPRL)
    return top not in ALLOWED_THIRD_PARTY and top not in sys.stdlib_module_names and top != "__future__"


def test_the_checker_catches_forbidden_imports():
    source = "import lightning\nfrom steprl.envs import base\ndef f():\n    from transformers import AutoModel\nfrom .. import policy\n"
    bad = sorted(m for m in imported_modules(source) if forbidden(m))
    assert bad == ["lightning", "steprl.envs.base", "steprl.policy", "transformers.AutoModel"]
    assert not [m for m in imported_modules("from .. import types\nfrom . import loss\n") if forbidden(m)]
    assert not forbidden("steprl.types.Task") and not forbidden("numpy.random") and not forbidden("collections.abc")
    assert forbidden("peft") and forbidden("steprl.rollout.collector") and forbidden("steprl.policy")


@pytest.mark.parametrize("path", sorted(ALGO_DIR.glob("*.py")), ids=lambda p: p.name)
def test_algo_imports_nothing_heavy(path):
    bad = [m for m in imported_modules(path.read_text()) if forbidden(m)]
    assert bad == [], f"{path.name} imports {bad}; algo/ may use numpy, torch, the stdlib, steprl.types and steprl.algo"


def test_all_algo_files_were_checked():
    names = {p.name for p in ALGO_DIR.glob("*.py")}
    assert {"success_rate.py", "sampling.py", "advantages.py", "samples.py", "augment.py", "loss.py", "spec.py"} <= names
