"""The distributions as PyPI users meet them: built, checked, installed outside the checkout.

One build (the library's sdist, its wheel built from that sdist, and the boutique's wheel)
serves every test here; the installs go into fresh virtualenvs in a temporary directory,
so nothing of the checkout is importable there.
"""

from __future__ import annotations

import email
import email.message
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import clue
from tests.conftest import free_port
from tests.test_readme import example

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")
VERSION = clue.__version__
# what the library's sdist holds at its top level besides clue/ (build and PKG-INFO add the rest)
SDIST_FILES = {"CHANGELOG.md", "LICENSE", "MANIFEST.in", "README.md", "pyproject.toml"}


def run(*args: str | Path, cwd: Path = ROOT) -> str:
    """Runs a command, failing the test with its output if it fails."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and both wheels, built as a release would build them."""
    out = tmp_path_factory.mktemp("dist")
    build: list[str | Path] = [sys.executable, "-m", "build", "--installer", "uv", "--outdir", out]
    run(*build, ".")  # the sdist, then the wheel built from the unpacked sdist
    run(*build, "--wheel", "packaging/boutique")
    return out


def library_wheel(dist: Path) -> Path:
    return dist / f"clue_observability-{VERSION}-py3-none-any.whl"


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(name))


def test_twine_check_passes_every_distribution(dist: Path) -> None:
    names = sorted(p.name for p in dist.iterdir())
    assert names == [
        f"clue_boutique-{VERSION}-py3-none-any.whl",
        f"clue_observability-{VERSION}-py3-none-any.whl",
        f"clue_observability-{VERSION}.tar.gz",
    ]
    out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert out.count("PASSED") == 3, out


def test_the_library_wheel_holds_clue_and_all_of_it(dist: Path) -> None:
    with zipfile.ZipFile(library_wheel(dist)) as z:
        entries = set(z.namelist())
    info = f"clue_observability-{VERSION}.dist-info/"
    outside = {e for e in entries if not e.startswith(("clue/", info))}
    assert not outside, f"not clue's: {sorted(outside)}"
    assert not [e for e in entries if "__pycache__" in e or e.endswith(".pyc")]
    on_disk = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "clue").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert on_disk - entries == set(), "files of clue/ missing from the wheel"
    assert {"clue/py.typed", "clue/debug/pprof/flamegraph.html", info + "licenses/LICENSE"} <= (
        entries
    )


def test_the_library_metadata_is_what_pypi_shows(dist: Path) -> None:
    meta = metadata(library_wheel(dist))
    assert (meta["Name"], meta["Version"]) == ("clue-observability", VERSION)
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "pip install 'clue-observability[all]'" in (meta.get_payload() or "")
    classifiers = set(meta.get_all("Classifier") or [])
    for minor in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {minor}" in classifiers
    assert {"Typing :: Typed", "Operating System :: OS Independent"} <= classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Source", "Documentation", "Changelog", "Issues"} <= set(urls)
    assert not [r for r in meta.get_all("Requires-Dist") or [] if "boutique" in r]


def test_the_sdist_holds_the_library_only(dist: Path) -> None:
    top = f"clue_observability-{VERSION}/"
    with tarfile.open(dist / f"clue_observability-{VERSION}.tar.gz") as t:
        names = [m.name.removeprefix(top) for m in t.getmembers() if m.isfile()]
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == SDIST_FILES | {"clue", "clue_observability.egg-info", "PKG-INFO", "setup.cfg"}
    assert not [n for n in names if "__pycache__" in n]


def test_the_boutique_wheel_holds_the_boutique_on_the_library(dist: Path) -> None:
    wheel = dist / f"clue_boutique-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        entries = z.namelist()
    info = f"clue_boutique-{VERSION}.dist-info/"
    assert not [e for e in entries if not e.startswith(("reference_services/", info))]
    assert "reference_services/frontend/templates/base.html" in entries
    assert not [e for e in entries if "__pycache__" in e]
    requires = metadata(wheel).get_all("Requires-Dist") or []
    assert "clue-observability[all]" in requires


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv outside the checkout; its python."""
    where = tmp_path_factory.mktemp("venv")
    run(UV, "venv", "--quiet", "--python", sys.executable, where / "venv", cwd=where)
    yield where / "venv" / "bin" / "python"


# run in the virtualenv with no extras: clue from it, nothing of the checkout or of the extras
PLAIN = """
import importlib.util, sys
import clue
from clue import log
assert clue.__file__.startswith(sys.argv[1]), clue.__file__
assert importlib.util.find_spec("reference_services") is None
assert importlib.util.find_spec("starlette") is None
clue.configure("plain", "1.0.0")
log.error("installed", version=clue.__version__)
clue.shutdown()
"""


def install(python: Path, requirement: str) -> None:
    run(UV, "pip", "install", "--quiet", "--python", python, requirement, cwd=python.parents[2])


def test_the_wheel_installs_alone_and_then_with_all_extras(dist: Path, venv: Path) -> None:
    """No extras: logging and the OpenTelemetry bootstrap; then ``[all]`` runs the README's
    example service, which is called over real HTTP."""
    install(venv, str(library_wheel(dist)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_", "PYTHON"))}
    env["OTEL_TRACES_SAMPLER"] = "always_off"
    done = subprocess.run(
        [venv, "-c", PLAIN, str(venv.parents[1])],
        cwd=venv.parents[2],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"installed" in done.stdout + done.stderr

    install(venv, f"{library_wheel(dist)}[all]")
    port = free_port()
    code = example().replace("port=8000", f"port={port}")
    server = subprocess.Popen(
        [venv, "-c", code],
        cwd=venv.parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/orders/7", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert (ok.status_code, ok.json()) == (200, {"id": "7"}), out.decode() + err.decode()
    assert ok.headers["x-request-id"]
    entries = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert [e["status"] for e in entries if e["msg"] == "request"] == [200], err.decode()
