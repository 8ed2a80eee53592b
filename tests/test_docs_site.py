"""The docs site builds in strict mode (``make docs``), and strict mode catches a broken link."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's notice about its successor


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKDOCS, "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_page_builds_and_the_reference_comes_from_the_docstrings(tmp_path: Path) -> None:
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    built = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert pages - {"index"} <= built
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    # a docstring's first line, rendered under the function's own heading
    assert 'id="clue.log.request_scope"' in reference
    assert (
        "Capture clue&#39;s log entries" in reference or "Capture clue's log entries" in reference
    )


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\nSee [the old page](moved-away.md).\n")
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "moved-away.md" in done.stderr


def test_the_reference_covers_every_public_module() -> None:
    """A module added to clue gets its section in docs/reference.md (the collector is a
    program, docs/collector.md; the pytest plugin only registers clue.testing's fixtures)."""
    clue_dir = ROOT / "clue"
    names = {p.stem for p in clue_dir.glob("*.py")} | {
        p.parent.name for p in clue_dir.glob("*/__init__.py")
    }
    public = {n for n in names if not n.startswith("_")} - {"collector", "pytest_plugin"}
    reference = (ROOT / "docs" / "reference.md").read_text()
    assert [n for n in sorted(public) if f"::: clue.{n}\n" not in reference] == []
