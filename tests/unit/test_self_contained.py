"""The repository stands on its own: code, configs and docs cite its own docs/, never files outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = ("ALGORITHM.md", "DESIGN.md", "../shared", "shared/reference")
FILES = sorted(
    [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("conf").rglob("*.yaml"), *ROOT.joinpath("docs").rglob("*.md"), ROOT / "README.md"]
)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_citation_of_files_outside_the_repository(path):
    text = path.read_text()
    assert not [name for name in OUTSIDE if name in text]


def test_the_docs_the_code_cites_exist():
    for name in ("algorithm.md", "architecture.md"):
        assert (ROOT / "docs" / name).is_file()
