"""The layer order of DESIGN (docs/architecture in the README): which package may import which.

    errors, types <- actions <- envs;  algo <- policy;  comm, envs, algo <- rollout <- round <- lightning <- train

Every import statement in src/steprl (those inside functions too) is read from the source; an import
against the order, a cycle between modules, or the Lightning module looking up the datamodule fails.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "steprl"

#: steprl layer -> the steprl layers it may import (itself always allowed).
ALLOWED = {
    "errors": set(),
    "types": {"errors"},
    "hydra_resolvers": set(),
    "actions": {"types", "errors"},
    "algo": {"types", "errors"},
    "envs": {"types", "errors", "actions"},
    "policy": {"types", "errors", "algo"},
    "comm": {"errors"},
    "rollout": {"types", "errors", "algo", "envs", "comm"},
    "round": {"types", "errors", "algo", "rollout", "comm"},
    "overlap": {"types", "errors", "algo", "rollout", "round", "comm"},
    "lightning": {"types", "errors", "algo", "policy", "rollout", "round", "overlap", "comm"},
    "analysis": {"types", "errors"},
    "train": {"types", "errors", "actions", "algo", "envs", "policy", "rollout", "round", "overlap", "comm", "lightning", "analysis", "hydra_resolvers"},
}
#: Third-party packages a layer must never import (the model stack stays out of maths, envs and the round).
FORBIDDEN_THIRD_PARTY = {
    "algo": {"lightning", "transformers", "peft", "hydra", "omegaconf", "ray", "vllm"},
    "envs": {"lightning", "transformers", "peft", "vllm"},
    "policy": {"lightning", "hydra", "omegaconf", "ray"},
    "rollout": {"lightning", "transformers", "peft", "hydra", "omegaconf"},
    "round": {"lightning", "transformers", "peft", "hydra", "omegaconf"},
    "overlap": {"lightning", "transformers", "peft", "hydra", "omegaconf"},
    "comm": {"lightning", "transformers", "peft"},
}
#: Layers kept to an allow-list of third-party packages: algo/ is numbers and tensors only.
ONLY_THIRD_PARTY = {"algo": {"numpy", "torch"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[str]:
    """Every module an import statement names (relative imports resolved; `from x import y` gives x.y)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "steprl"


def problems(path: Path) -> list[str]:
    mine = layer(module_name(path))
    found = []
    for name in imports(path):
        top = name.split(".")[0]
        if top == "steprl" and name.count("."):
            theirs = name.split(".")[1]
            if theirs != mine and theirs not in ALLOWED.get(mine, set()) and theirs in ALLOWED:
                found.append(f"{module_name(path)} imports {name} (layer {mine} may not import {theirs})")
        elif top in FORBIDDEN_THIRD_PARTY.get(mine, set()) or (
            mine in ONLY_THIRD_PARTY
            and top not in ONLY_THIRD_PARTY[mine] | {"steprl", "__future__"}
            and top not in sys.stdlib_module_names
        ):
            found.append(f"{module_name(path)} imports {name}")
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_checker_catches_forbidden_imports(tmp_path):
    bad = tmp_path / "src" / "steprl" / "algo"
    bad.mkdir(parents=True)
    (bad / "x.py").write_text("import lightning\nimport scipy\nimport numpy.linalg\nfrom steprl.envs import base\ndef f():\n    from transformers import AutoModel\nfrom .. import policy\n")
    global SRC
    saved, SRC = SRC, tmp_path / "src"
    try:
        assert sorted(problems(bad / "x.py")) == [
            "steprl.algo.x imports lightning",
            "steprl.algo.x imports scipy",
            "steprl.algo.x imports steprl.envs.base (layer algo may not import envs)",
            "steprl.algo.x imports steprl.policy (layer algo may not import policy)",
            "steprl.algo.x imports transformers.AutoModel",
        ]
    finally:
        SRC = saved


def test_every_layer_is_in_the_table():
    layers = {layer(module_name(p)) for p in SOURCES} - {"steprl"}
    assert layers <= set(ALLOWED), sorted(layers - set(ALLOWED))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layer_order(path):
    assert problems(path) == []


def test_no_import_cycle_between_modules():
    """Module-level imports (the ones that run at import time) form no cycle."""
    modules = {module_name(p): p for p in SOURCES}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:  # top level only: function-level imports are lazy
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("steprl") and not node.level:
                # `from pkg import sub` depends on the submodule; `from mod import name` on the module
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [node.module, *subs]
            graph[name] |= {t for t in targets if t in modules and t != name}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    sys.setrecursionlimit(10_000)
    for module in sorted(modules):
        if module not in state:
            visit(module, [module])


def test_the_module_reads_everything_from_the_batch():
    """StepLightningModule never looks up the datamodule: the batch is its only channel."""
    source = (PACKAGE / "lightning" / "module.py").read_text()
    assert "datamodule" not in source
