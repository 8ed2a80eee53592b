"""Every example of docs/testing.md runs, as a test module of a suite of its own in which
only clue's installed plugin provides the fixtures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def test_every_example_runs_and_its_tests_pass(tmp_path: Path) -> None:
    examples = BLOCK.findall(PAGE.read_text())
    assert len(examples) == 4
    for n, code in enumerate(examples):
        (tmp_path / f"test_example_{n}.py").write_text(code)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    tests = sum(code.count("\ndef test_") for code in examples)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUE_", "OTEL_"))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{tests} passed" in run.stdout, run.stdout
