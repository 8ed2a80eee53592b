"""Every link of README.md and docs/*.md into the project reaches a file, and its #anchor a
heading.

Pages get split and sections moved (integrations.md out of telemetry.md, admin.md out of
debug.md); a link left pointing at the old place fails here instead of in a reader's browser.
README.md is also the project's page on PyPI, where a relative link leads nowhere: its links
into the project are absolute, to the repository's main branch, and checked as local files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# where README.md's links into the project point (pyproject.toml's Source URL)
REPOSITORY = "https://github.com/clue-python/clue/blob/main/"


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page`` (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        heading = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def links(page: Path) -> list[str]:
    """The page's links into the project, relative to the page's folder."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    found = []
    for target in LINK.findall(text):
        if target.startswith(REPOSITORY):
            found.append(str(Path(os.path.relpath(ROOT, page.parent)) / target[len(REPOSITORY) :]))
        elif not target.startswith(("http://", "https://", "mailto:")):
            found.append(target)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        reached = file.exists() and not (
            anchor and file.suffix == ".md" and anchor not in anchors(file)
        )
        if not reached:
            broken.append(target)
    assert broken == []


def test_the_readme_links_into_the_project_work_on_pypi_too() -> None:
    text = re.sub(r"^```.*?^```", "", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    targets = LINK.findall(text)
    assert [t for t in targets if not t.startswith(("http://", "https://", "mailto:", "#"))] == []
    assert any(t.startswith(REPOSITORY + "docs/") for t in targets)
    assert (
        'Source = "' + REPOSITORY.removesuffix("/blob/main/") + '"'
        in (ROOT / "pyproject.toml").read_text()
    )
