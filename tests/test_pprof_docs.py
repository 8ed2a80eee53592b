"""The "## Profiling" section of docs/debug.md runs: its shop.py as a real service (twice: open
and with a token), every console session against it through bash, its other Python blocks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "debug.md"
SERVICE_MARK = "# shop.py\n"
TOKEN = "change-me"


def section() -> str:
    sections = re.split(r"^(?=## )", DOC.read_text(), flags=re.M)
    found = [s for s in sections if s.startswith("## Profiling")]
    assert len(found) == 1, "docs/debug.md must have one ## Profiling section"
    return found[0]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```$", section(), flags=re.S | re.M)


def service_source() -> str:
    (source,) = [b for b in blocks("python") if b.startswith(SERVICE_MARK)]
    return source


def sessions() -> list[list[tuple[str, list[str]]]]:
    """Each console block as (command, expected output lines) pairs."""
    result = []
    for block in blocks("console"):
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        result.append(steps)
    return result


def pattern(shown: list[str]) -> re.Pattern[str]:
    """``shown`` as a regex: a ``...`` line stands for any lines, ``...`` in a line for any text."""
    parts = []
    for line in shown:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = (re.escape(piece) for piece in line.rstrip().split("..."))
            parts.append("[^\n]*".join(pieces) + r"[ \t]*\n")
    return re.compile("".join(parts))


def matches(shown: list[str], output: str) -> bool:
    text = "".join(line.rstrip() + "\n" for line in output.splitlines())
    return pattern(shown).fullmatch(text) is not None


def test_pattern_semantics() -> None:
    assert matches(["a ... c"], "a b c\n")
    assert not matches(["a ... c"], "a b d\n")
    assert matches(["x", "...", "z"], "x\nz\n")
    assert matches(["x", "...", "z"], "x\n1\n2\nz\n")
    assert not matches(["x", "...", "z"], "x\n1\n")
    assert matches([], "")
    assert not matches([], "unexpected\n")


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90  # imports alone took 9 s at load 16 on 2 cores
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"shop.py exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/livez", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"shop.py did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shop")
    (path / "shop.py").write_text(service_source())
    return path


def shell_env(workdir: Path) -> dict[str, str]:
    """``python3`` is this virtualenv's interpreter; go keeps its files in ``workdir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["HOME"] = env["PPROF_TMPDIR"] = str(workdir)
    return env


@pytest.fixture(scope="module")
def services(workdir: Path) -> Iterator[dict[str, str]]:
    """localhost:8081 of the page: shop.py as documented; 8082: the same with a token."""
    started: list[subprocess.Popen[bytes]] = []
    addresses: dict[str, str] = {}
    try:
        waits: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for documented, token in (("localhost:8081", None), ("localhost:8082", TOKEN)):
            port = free_port()
            env = shell_env(workdir) | {"CLUE_ADMIN_PORT": str(port)}
            if token is not None:
                env["CLUE_ADMIN_TOKEN"] = token
            log = workdir / f"shop-{port}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    ["python3", "shop.py"], cwd=workdir, env=env, stdout=out, stderr=out
                )
            started.append(process)
            waits.append((f"http://127.0.0.1:{port}", process, log))
            addresses[documented] = f"127.0.0.1:{port}"
        for url, process, log in waits:  # both start meanwhile
            wait_until_serving(url, process, log)
        yield addresses
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            assert process.wait(15) == 0, "shop.py did not stop cleanly on SIGTERM"


def test_the_section_has_sessions_and_the_service() -> None:
    steps = [step for session in sessions() for step in session]
    assert len(steps) >= 25
    assert "AdminServer(" in service_source()
    assert len(blocks("python")) == 2


@pytest.mark.parametrize("number", range(len(sessions())))
def test_console_session(services: dict[str, str], workdir: Path, number: int) -> None:
    steps = sessions()[number]
    if any(command.startswith("go ") for command, _ in steps) and shutil.which("go") is None:
        pytest.skip("needs go (.ci/run installs golang-go)")
    env = shell_env(workdir)
    for command, shown in steps:
        for documented, real in services.items():
            command = command.replace(documented, real)
        run = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="backslashreplace",  # binary output fails the match, readably
            timeout=60,
            check=False,
        )
        output = run.stdout
        for documented, real in services.items():
            output = output.replace(real, documented)
        assert run.returncode == 0 or "| head" in command, (command, output)
        assert matches(shown, output), f"$ {command}\n{output}"


def test_python_block_runs() -> None:
    (block,) = [b for b in blocks("python") if not b.startswith(SERVICE_MARK)]
    namespace: dict[str, object] = {"__name__": "pprof_doc"}
    exec(compile(block, f"{DOC.name} profiling block", "exec"), namespace)
