"""The workers of a pre-fork server asking each other (``clue.telemetry.siblings``), with
real processes on real Unix sockets: each worker counts once, whatever the burst."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from clue.telemetry import siblings

ROOT = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from clue.telemetry import siblings

    siblings.on_command("who", lambda argument: f"{os.getpid()} {argument}".encode())
    siblings.share(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    """
)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """Another worker answering in a directory of its own: the directory and its pid (each
    test removes what it adds there)."""
    shared = tmp_path_factory.mktemp("workers")
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(shared)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    yield shared, process.pid
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(10) == 0


def test_a_burst_of_askers_reaches_a_busy_worker_every_time(worker: tuple[Path, int]) -> None:
    """Far more askers at once than a listen queue holds: each gets its answer (a full
    queue once left the worker out of the sum, silently)."""
    shared, pid = worker

    async def burst() -> list[list[bytes]]:
        return await asyncio.gather(*(siblings.ask_others(shared, f"who {i}") for i in range(300)))

    answers = asyncio.run(burst())
    assert answers == [[f"{pid} {i}".encode()] for i in range(300)]


def test_a_worker_reachable_under_two_names_counts_once(worker: tuple[Path, int]) -> None:
    shared, pid = worker
    alias = shared / "4000000.sock"
    alias.symlink_to(shared / f"{pid}.sock")
    try:
        assert asyncio.run(siblings.ask_others(shared, "who x")) == [f"{pid} x".encode()]
    finally:
        alias.unlink()


def test_the_asker_never_counts_itself(worker: tuple[Path, int]) -> None:
    """Its own answers are the caller's to add: reached under another name, it is skipped."""
    shared, _ = worker
    siblings.on_command("who", lambda argument: argument.encode())
    sharing = siblings.Sharing(shared)
    try:
        (shared / "4000001.sock").symlink_to(shared / f"{os.getpid()}.sock")
        assert len(asyncio.run(siblings.ask_others(shared, "who x"))) == 1  # the worker alone
    finally:
        sharing.stop()
        (shared / "4000001.sock").unlink()


def test_a_socket_left_by_a_process_that_is_gone_is_removed(worker: tuple[Path, int]) -> None:
    shared, pid = worker
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    stale = shared / f"{int(done.stdout)}.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # nobody listens there any more
    assert asyncio.run(siblings.ask_others(shared, "who x")) == [f"{pid} x".encode()]
    assert not stale.exists()


def test_a_refusing_socket_of_a_live_process_stays(worker: tuple[Path, int]) -> None:
    """Refused is not gone while the process lives (a worker between bind and listen, or
    whose queue refuses): its socket is left for the next scrape."""
    shared, pid = worker
    named = shared / "1.sock"  # pid 1 lives as long as the system does
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(named))  # bound, not listening: refuses
    try:
        assert asyncio.run(siblings.ask_others(shared, "who x")) == [f"{pid} x".encode()]
        assert named.exists()
    finally:
        listener.close()
        named.unlink()
