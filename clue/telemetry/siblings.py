"""The workers of a pre-fork server, reaching each other (``CLUE_WORKERS_DIR``).

Each worker process answers on a Unix socket named by its pid in the shared
directory, one command a connection: ``metrics`` (its Prometheus exposition)
and the commands other packages add (``on_command``: the debug toggle). The
worker that takes a scrape asks every other one at that moment and answers
with the sum, sample by sample (same name and labels): exact at the scrape,
with no file written per measurement. A worker that is gone no longer counts
(its socket refuses and, its process gone, is removed), as a restarted
process's counters start over.

Each worker counts once: every answer starts with the answering process's pid,
and the asker keeps one answer a pid, never its own. A socket appears in the
directory only once it listens (bound under another name, then renamed), and a
worker whose queue of connections is full is busy, not gone: the asker tries
again until the deadline rather than leaving it out.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from clue.telemetry.forked import in_child

DIR_ENV = "CLUE_WORKERS_DIR"
_ASK_TIMEOUT = 2.0  # seconds for every worker's answer, together
_COMMAND_MAX = 1024  # bytes of one command line
_SOCKET_PATH_MAX = 107  # bytes (Linux; 103 on macOS and the BSDs, found at bind)
# every worker's scrapes may ask one worker at once: socketserver's default queue of 5
# overflows under a burst, and an overflowing connect is a refusal or a retry
_QUEUE = 128
_RETRY_S = 0.005  # between attempts to reach a worker whose queue is full


def workers_dir() -> Path | None:
    """The shared directory of ``CLUE_WORKERS_DIR``, created if missing; None when unset.
    ValueError naming the variable when it cannot be used."""
    raw = os.environ.get(DIR_ENV, "")
    if not raw.strip():
        return None
    path = Path(raw)
    # a pid of up to 7 digits, ".sock" and the separator within a Unix socket path
    if len(os.fsencode(path)) + 13 > _SOCKET_PATH_MAX:
        raise ValueError(f"{DIR_ENV}={raw[:40]!r}... is too long for Unix socket paths")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        message = f"{DIR_ENV}={raw[:80]!r} is not a usable directory: {exc.strerror}"
        raise ValueError(message) from None
    return path


def exposition() -> bytes:
    """This process's exposition of prometheus-client's default registry."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)


_COMMANDS: dict[str, Callable[[str], bytes]] = {"metrics": lambda _: exposition()}


def on_command(name: str, handler: Callable[[str], bytes]) -> None:
    """Answer the command ``name`` (one word, then an argument) with ``handler(argument)``."""
    _COMMANDS[name] = handler


class _Answer(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(_ASK_TIMEOUT)
        with contextlib.suppress(OSError):  # the asking worker gave up
            line = self.request.makefile("rb").readline(_COMMAND_MAX).decode(errors="replace")
            name, _, argument = line.strip().partition(" ")
            handler = _COMMANDS.get(name)
            answer = b"" if handler is None else handler(argument)
            self.request.sendall(b"%d\n" % os.getpid() + answer)  # who answers, first


class _Server(socketserver.ThreadingUnixStreamServer):
    request_queue_size = _QUEUE
    daemon_threads = True


class Sharing:
    """This worker's socket in ``directory``, answering the others' scrapes; made anew
    in a forked child (under its own pid)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._start()
        in_child(self._start)

    def _start(self) -> None:
        inherited = self._server
        if inherited is not None:  # a forked child: the parent's socket stays the parent's
            inherited.socket.close()
        pid = os.getpid()
        self._path = self.directory / f"{pid}.sock"
        # bound and listening under a name the askers skip, then renamed into place: a
        # socket seen in the directory never refuses for being half made
        making = self.directory / f"{pid}.new"
        with contextlib.suppress(FileNotFoundError):
            making.unlink()  # left by an earlier process of the same pid
        server = _Server(str(making), _Answer)
        making.chmod(0o600)  # connecting needs write access: the service's user alone
        making.replace(self._path)  # over any left by an earlier process of the same pid
        self._server = server
        threading.Thread(
            target=server.serve_forever, name="clue-metrics-share", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop answering and remove this worker's socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()


_sharing: Sharing | None = None


def share(directory: Path) -> None:
    """Answer the other workers sharing ``directory`` from now on (once in a process)."""
    global _sharing
    if _sharing is None:
        _sharing = Sharing(directory)


def _stop_sharing() -> None:
    if _sharing is not None:
        _sharing.stop()


atexit.register(_stop_sharing)


def _gone(path: Path) -> bool:
    """Whether the process a socket is named after has ended (its socket is stale)."""
    try:
        os.kill(int(path.stem), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # not a pid, or alive under another user
        return False
    return False


async def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.connect(str(path))  # a Unix socket connects at once or not at all
                return sock
            except BlockingIOError:
                # the worker's queue is full: busy, not gone. (asyncio's own connect takes
                # this for a connection under way and fails at the first write)
                await asyncio.sleep(_RETRY_S)
    except BaseException:
        sock.close()
        raise


async def _ask(path: Path, command: str) -> tuple[int, bytes] | None:
    """The pid of the worker at ``path`` and its answer; None when it refuses."""
    try:
        sock = await _connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        if _gone(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return None
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        pid, _, answer = (await reader.read()).partition(b"\n")
        return (int(pid), answer) if pid.isdigit() else None
    finally:
        writer.close()


async def ask_others(directory: Path, command: str) -> list[bytes]:
    """The answers of the other workers sharing ``directory`` to ``command``, one a
    worker, within 2 s for all (a worker slower than that, or gone, is left out)."""
    own = os.getpid()
    asked = [
        asyncio.ensure_future(_ask(p, command))
        for p in directory.glob("*.sock")
        if p.name != f"{own}.sock"
    ]
    if not asked:
        return []
    done, pending = await asyncio.wait(asked, timeout=_ASK_TIMEOUT)
    for late in pending:
        late.cancel()
    await asyncio.gather(*pending, return_exceptions=True)  # their sockets closed first
    answers: dict[int, bytes] = {}
    for future in done:
        found = None if future.exception() else future.result()
        if found is not None and found[0] != own:
            answers.setdefault(found[0], found[1])
    return list(answers.values())


async def gather(directory: Path) -> bytes:
    """The exposition of every worker sharing ``directory``, summed; this one's included."""
    texts = [exposition(), *await ask_others(directory, "metrics")]
    return merge([t.decode() for t in texts if t])


def merge(texts: list[str]) -> bytes:
    """Prometheus text expositions summed sample by sample (same name and labels); a
    ``_created`` timestamp keeps the earliest."""
    from prometheus_client import CollectorRegistry, Metric, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            sums = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                known = sums.get(key)
                if known is None:
                    sums[key] = sample.value
                elif sample.name.endswith("_created"):
                    sums[key] = min(known, sample.value)
                else:
                    sums[key] = known + sample.value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            return families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)
