"""clue under pre-fork servers: gunicorn with three uvicorn workers, or three sync workers,
and ``--preload`` (``clue.configure()`` runs in the master, before the fork), and
``uvicorn --workers 3`` (each worker imports the app, so configures itself).

300 requests, every one sampled; the batch delay is ten minutes, so every span reaches
the OTLP receiver only through each worker's flush when it stops: SIGTERM to the
master one second after the last request. Nothing lost, nothing doubled.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import clue
from clue import telemetry
from tests.conftest import free_port
from tests.otlp_receiver import OTLPReceiver

#: A forked child's spans carry a service.instance.id of its own from the SDK's own
#: at-fork handling, found in OpenTelemetry 1.45 (1.43, the lowest admitted, keeps the
#: parent's: `make test-lowest` checks the rest of the behaviour there).
SDK_RENEWS_INSTANCE_ID = tuple(map(int, version("opentelemetry-sdk").split(".")[:2])) >= (1, 45)
ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 300

APP = textwrap.dedent(
    """
    import os
    import clue
    from clue.asgi import ClueMiddleware
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    clue.configure("prefork")

    async def item(request):
        return JSONResponse({"id": request.path_params["item_id"], "pid": os.getpid()})

    async def healthz(request):
        return PlainTextResponse(str(os.getpid()))

    app = ClueMiddleware(
        Starlette(routes=[Route("/items/{item_id:int}", item), Route("/healthz", healthz)])
    )
    """
)

WSGI_APP = textwrap.dedent(
    """
    import json, os
    import clue
    from clue.wsgi import ClueMiddleware

    clue.configure("prefork")

    def plain(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(os.getpid()).encode()]
        body = {"id": int(path.rsplit("/", 1)[1]), "pid": os.getpid()}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    app = ClueMiddleware(plain)
    """
)

SERVERS = {
    "gunicorn-sync-preload": [
        "-m", "gunicorn", "--preload", "--workers", "3", "--worker-class", "sync",
        "--graceful-timeout", "20", "--bind", "127.0.0.1:{port}", "service_app:app",
    ],
    "gunicorn-preload": [
        "-m", "gunicorn", "--preload", "--workers", "3",
        "--worker-class", "uvicorn_worker.UvicornWorker", "--graceful-timeout", "20",
        "--bind", "127.0.0.1:{port}", "service_app:app",
    ],
    "uvicorn-workers": [
        "-m", "uvicorn", "--workers", "3", "--port", "{port}", "service_app:app",
    ],
}  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    r.start()
    yield r
    r.stop()


def start(
    directory: Path, receiver: OTLPReceiver, arguments: Sequence[str], **extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """The server serving ``service_app:app`` from ``directory``; it and its base URL once
    its three workers answer."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="600000",
        OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        OTEL_TRACES_SAMPLER="always_on",
        PYTHONPATH=f"{directory}{os.pathsep}{ROOT}",
        **extra,
    )
    command = [sys.executable, *(a.format(port=port) for a in arguments)]
    with (directory / "server.log").open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output, cwd=directory)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90  # each worker imports clue: seconds on a busy machine
    workers: set[str] = set()
    while len(workers) < 3:
        assert process.poll() is None, (directory / "server.log").read_text()
        assert time.monotonic() < deadline, f"{len(workers)} of 3 workers answered"
        try:  # a skip path: no telemetry of its own; a connection each, to reach them all
            workers.add(httpx.get(f"{url}/healthz", timeout=1).text)
        except httpx.TransportError:
            time.sleep(0.05)
    return process, url


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_every_worker_exports_every_span_and_flushes_at_sigterm(
    tmp_path: Path, receiver: OTLPReceiver, server: str
) -> None:
    (tmp_path / "service_app.py").write_text(WSGI_APP if "sync" in server else APP)
    process, url = start(tmp_path, receiver, SERVERS[server])
    try:
        # a connection per request: the kernel spreads them over the three workers
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, limits=fresh) as client, ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda i: client.get(f"/items/{i}"), range(REQUESTS)))
        assert [r.json()["id"] for r in responses] == list(range(REQUESTS))
        workers = Counter(r.json()["pid"] for r in responses)
        time.sleep(1)  # the issue's measurement: SIGTERM one second after the last request
        assert receiver.spans() == []  # queued until each worker stops
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "server.log").read_text()

    assert len(workers) == 3, workers
    spans = receiver.wait_for(lambda r: len(r.spans()) >= REQUESTS and r.spans())
    assert Counter(s.attributes["url.path"] for s in spans) == Counter(
        f"/items/{i}" for i in range(REQUESTS)
    ), "every request's span, once"
    instances = Counter(s.resource["service.instance.id"] for s in spans)
    if SDK_RENEWS_INSTANCE_ID:
        assert sorted(instances.values()) == sorted(workers.values()), "each worker its own"


FORKING = textwrap.dedent(
    """
    import json, os, sys, threading
    import clue
    from clue import telemetry
    from clue.telemetry import bootstrap, histograms, resilience

    clue.configure("forking")
    tracer = telemetry.tracer("forking")
    duration = telemetry.meter("forking").create_histogram("work.duration", unit="s")
    with tracer.start_as_current_span("in the parent"):
        duration.record(0.5)
    assert telemetry.force_flush(5)

    # another thread holds clue's locks while the main thread forks: as an export or a
    # collection under way would (each is held for a moment by the SDK's threads)
    held = [
        bootstrap._lock,
        resilience.STATS["traces"]._lock,
        histograms.REGISTRY._lock,
        *(g.guard._count_lock for g in bootstrap._pipeline.exporters),
    ]
    holding, forked = threading.Event(), threading.Event()

    def hold():
        for lock in held:
            lock.acquire()
        holding.set()
        forked.wait()
        for lock in held:
            lock.release()

    threading.Thread(target=hold).start()
    holding.wait()
    pid = os.fork()
    if pid == 0:
        with tracer.start_as_current_span("in the child"):
            duration.record(0.25)
        ok = telemetry.force_flush(5)
        print("child", os.getpid(), ok, json.dumps(telemetry.stats()["traces"]), flush=True)
        clue.shutdown()
        os._exit(0 if ok else 1)
    forked.set()
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_a_forked_child_exports_on_its_own_even_with_locks_held_at_the_fork(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """The child of ``os.fork`` exports through an exporter of its own, counts its own
    exports, and no lock another thread held at the fork blocks it."""
    (tmp_path / "forking.py").write_text(FORKING)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_SAMPLER="always_on",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, str(tmp_path / "forking.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    _, child_ok, child_stats = lines["child"].split(" ", 2)
    assert child_ok == "True"
    assert json.loads(child_stats) == {"exported": 1, "failed": 0, "dropped": 0}, "its own count"
    spans = receiver.wait_for(lambda r: len(r.spans()) >= 2 and r.spans())
    assert sorted(s.name for s in spans) == ["in the child", "in the parent"]
    if SDK_RENEWS_INSTANCE_ID:
        assert len({s.resource["service.instance.id"] for s in spans}) == 2


METRICS_APP = APP.replace('clue.configure("prefork")', 'clue.configure("prefork", prometheus=True)')
METRICS_APP = METRICS_APP.replace(
    'Route("/healthz", healthz)]',
    'Route("/healthz", healthz), Route("/metrics", clue.telemetry.metrics_app())]',
)


def served(exposition: str, name: str) -> float:
    """The sum of the samples called ``name`` in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    )


@pytest.mark.parametrize("server", ["gunicorn-preload", "uvicorn-workers"])
def test_one_scrape_of_metrics_reports_every_worker(
    tmp_path: Path, receiver: OTLPReceiver, server: str
) -> None:
    """With ``CLUE_WORKERS_DIR``, the worker taking a scrape answers with every worker's
    measurements summed: the request count is 300 whichever worker answers."""
    (tmp_path / "service_app.py").write_text(METRICS_APP)
    shared = tmp_path / "metrics"
    process, url = start(tmp_path, receiver, SERVERS[server], CLUE_WORKERS_DIR=str(shared))
    try:
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, limits=fresh) as client, ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda i: client.get(f"/items/{i}"), range(REQUESTS)))
            assert len({r.json()["pid"] for r in responses}) == 3
            scrapes = list(pool.map(lambda _: client.get("/metrics"), range(12)))
        counts = [served(s.text, "http_server_request_duration_seconds_count") for s in scrapes]
        assert counts == [REQUESTS] * 12
        sockets = list(shared.glob("*.sock"))  # the master's too, under gunicorn --preload
        assert len(sockets) >= 3
        assert {stat.S_IMODE(p.stat().st_mode) for p in sockets} == {0o600}, "the user's own"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "server.log").read_text()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/dev/null/metrics", r"CLUE_WORKERS_DIR='/dev/null/metrics' is not a usable directory"),
        ("/tmp/" + "m" * 5000, r"CLUE_WORKERS_DIR='/tmp/m{35}'\.\.\. is too long"),
    ],
)
def test_a_bad_metrics_dir_is_a_clear_error_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    memory = InMemorySpanExporter()
    clue.configure("good", span_exporter=memory, sampler=ALWAYS_ON)
    monkeypatch.setenv("CLUE_WORKERS_DIR", value)
    with pytest.raises(ValueError, match=message):
        clue.configure("bad")
    with telemetry.tracer("t").start_as_current_span("still-configured"):
        pass
    telemetry.force_flush()
    assert [s.name for s in memory.get_finished_spans()] == ["still-configured"]


DEBUG_APP = (
    APP.replace('Route("/healthz", healthz)]', 'Route("/healthz", healthz), *clue.debug.routes()]')
    .replace(
        "async def item(request):\n",
        'async def item(request):\n    clue.log.debug("loading item", worker=os.getpid())\n',
    )
    .replace("import os\n", "import os\nimport clue.debug, clue.log\n", 1)
)
assert "clue.log.debug" in DEBUG_APP and "clue.debug.routes()" in DEBUG_APP


def debug_lines(log_file: Path) -> list[dict[str, object]]:
    lines = [line for line in log_file.read_text().splitlines() if line.startswith("{")]
    return [e for e in map(json.loads, lines) if e.get("msg") == "loading item"]


def test_the_debug_toggle_reaches_every_worker_and_a_profile_names_its_worker(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """Under gunicorn with ``--preload``: each forked worker opens its own socket (the
    metrics test covers ``uvicorn --workers``, whose workers each configure)."""
    server = "gunicorn-preload"
    (tmp_path / "service_app.py").write_text(DEBUG_APP)
    shared = tmp_path / "workers"
    process, url = start(tmp_path, receiver, SERVERS[server], CLUE_WORKERS_DIR=str(shared))
    log_file = tmp_path / "server.log"
    try:
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, limits=fresh) as client, ThreadPoolExecutor(6) as pool:

            def load() -> set[int]:
                responses = pool.map(lambda i: client.get(f"/items/{i}"), range(60))
                return {r.json()["pid"] for r in responses}

            assert load() and debug_lines(log_file) == []  # debug is off
            assert client.get("/debug?debug-logs=on").json() == {"debug-logs": "on"}
            workers = load()
            assert len(workers) == 3
            logged = {e["worker"] for e in debug_lines(log_file)}
            assert logged == workers, "every worker logs at debug level"
            states = pool.map(lambda _: client.get("/debug").json(), range(12))
            assert all(state == {"debug-logs": "on"} for state in states)

            assert client.get("/debug?debug-logs=off").json() == {"debug-logs": "off"}
            before = len(debug_lines(log_file))
            load()
            assert len(debug_lines(log_file)) == before, "and off again in every worker"

            profile = client.get("/debug/pprof/profile?seconds=1", timeout=30)
            assert profile.status_code == 200
            pid = int(profile.headers["x-process-id"])
            assert pid in workers
            disposition = profile.headers["content-disposition"]
            assert disposition == f'attachment; filename="profile-{pid}.pb.gz"'
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log_file.read_text()


ADMIN_APP = (
    METRICS_APP.replace(
        "from starlette.routing import",
        "import contextlib\nfrom clue.admin import AdminServer\nfrom starlette.routing import",
    )
    .replace(
        "async def item(request):",
        "@contextlib.asynccontextmanager\n"
        "async def lifespan(app):\n"
        '    async with AdminServer(port=int(os.environ["ADMIN_PORT"])):\n'
        "        yield\n\n"
        "async def item(request):",
    )
    .replace("    Starlette(routes=[", "    Starlette(lifespan=lifespan, routes=[")
)


def test_every_worker_serves_the_admin_port_and_answers_for_the_whole_server(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """With ``CLUE_WORKERS_DIR``, the workers share the admin port (``SO_REUSEPORT``):
    whichever answers, ``/metrics`` counts the whole server."""
    (tmp_path / "service_app.py").write_text(ADMIN_APP)
    admin_port = free_port()
    process, url = start(
        tmp_path,
        receiver,
        SERVERS["gunicorn-preload"],
        CLUE_WORKERS_DIR=str(tmp_path / "workers"),
        ADMIN_PORT=str(admin_port),
    )
    try:
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(limits=fresh) as client, ThreadPoolExecutor(6) as pool:
            responses = pool.map(lambda i: client.get(f"{url}/items/{i}"), range(REQUESTS))
            assert len({r.json()["pid"] for r in responses}) == 3
            admin = f"http://127.0.0.1:{admin_port}"
            scrapes = list(pool.map(lambda _: client.get(f"{admin}/metrics"), range(12)))
        counts = [served(s.text, "http_server_request_duration_seconds_count") for s in scrapes]
        assert counts == [REQUESTS] * 12
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "server.log").read_text()
    assert "cannot listen" not in (tmp_path / "server.log").read_text()


HISTOGRAM_IDS = textwrap.dedent(
    """
    import json, os
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import clue
    from clue import telemetry

    reader = InMemoryMetricReader()
    clue.configure("forking", metric_exporter=reader)
    duration = telemetry.meter("forking").create_histogram("work.duration", unit="s")

    def instances():
        data = reader.get_metrics_data()
        return [rm.resource.attributes["service.instance.id"] for rm in data.resource_metrics]

    duration.record(1.0)
    print(json.dumps(["parent", instances()]), flush=True)
    pid = os.fork()
    if pid == 0:
        duration.record(2.0)
        print(json.dumps(["child", instances()]), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


def test_a_forked_childs_histograms_carry_its_own_instance_id(tmp_path: Path) -> None:
    """clue's own histograms (the request durations) are reported under the child's
    ``service.instance.id``, as the SDK's instruments are: never as the parent."""
    (tmp_path / "ids.py").write_text(HISTOGRAM_IDS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "ids.py")],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    found = dict(json.loads(line) for line in done.stdout.splitlines() if line.startswith("["))
    [parent], [child] = found["parent"], found["child"]
    assert parent != child
