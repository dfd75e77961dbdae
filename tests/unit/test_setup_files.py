"""The set-up files agree: environment.yml mirrors pyproject.toml, .ci/run runs the README's test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    mirrored = {_name(r) for r in pip_section if not r.startswith("-e")}
    assert mirrored == declared
    # and with the same version bounds
    bounds = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert {_name(r): r.replace(" ", "") for r in pip_section if not r.startswith("-e")} == bounds


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- setup-commands -->", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith(("```", "#"))]


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("python train.py")
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in [line.strip() for line in ci]


def test_pytest_markers_are_declared():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = {m.split(":")[0] for m in options["markers"]}
    assert {"slow", "gpu"} <= declared
    assert "--strict-markers" in options["addopts"]


def test_job_folder_names_stay_short_and_flat():
    from steprl.hydra_resolvers import short_dirname

    assert short_dirname("algo.s0=0.4,algo.s_low=0.1") == "algo.s0=0.4,algo.s_low=0.1"
    assert short_dirname("env.osworld_root=/data/osworld") == "env.osworld_root=_data_osworld"
    long = ",".join(f"algo.s0={0.1 + i / 1e17!r}" for i in range(20))
    short = short_dirname(long)
    assert len(short) == 120 and short != short_dirname(long + "x")  # cut, and still unique
