"""The documentation stands on its own: it names only files of the project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "database" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_links_reach_files_of_the_project(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    # A user has the project, not the workspace it was written in.
    assert "shared/" not in text
    targets = [target for target in LINK.findall(text) if "://" not in target]
    missing = [t for t in targets if not (document.parent / t).resolve().exists()]
    assert missing == []
