"""clue.wsgi under gunicorn (sync workers, two of them, a real port) with Flask and Django.

Each app calls ``clue.configure()`` in its module, so each worker configures
itself after the fork (no ``--preload``). The batch delays are ten minutes:
everything the test checks reaches the OTLP receiver only through each
worker's flush at exit, after SIGTERM to the master.

The sampler is ``parentbased_always_off``: a request carrying a sampled
``traceparent`` is traced; one without is not, so its info entries wait in the
request scope and are written only if it fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.otlp_receiver import LogRecord, OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

FLASK_APP = textwrap.dedent(
    """
    import os, time
    import clue
    from clue import log
    from clue.wsgi import ROUTE_KEY, ClueMiddleware
    from flask import Flask, jsonify, request

    clue.configure("wsgi-flask")
    app = Flask(__name__)

    @app.before_request
    def name_the_route():
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    @app.get("/items/<int:item_id>")
    def item(item_id):
        log.info("loading item", item_id=item_id)
        return jsonify(id=item_id, pid=os.getpid())

    @app.get("/slow")
    def slow():
        time.sleep(0.3)
        return jsonify(pid=os.getpid())

    @app.get("/unavailable")
    def unavailable():
        log.info("about to fail")
        return jsonify(error="try later"), 503

    @app.get("/boom")
    @app.get("/crash")
    def boom():
        log.info("about to raise")
        raise RuntimeError("kaboom")

    @app.get("/healthz")
    def healthz():
        return "ok"

    app.wsgi_app = ClueMiddleware(app.wsgi_app)
    """
)

DJANGO_APP = textwrap.dedent(
    """
    import os, time
    import clue
    from clue import log
    from clue.wsgi import ClueMiddleware
    from django.conf import settings
    from django.http import HttpResponse, JsonResponse
    from django.urls import path

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="test-only",
        MIDDLEWARE=["clue.django.ClueMiddleware"],
    )
    clue.configure("wsgi-django")

    def item(request, item_id):
        log.info("loading item", item_id=item_id)
        return JsonResponse({"id": item_id, "pid": os.getpid()})

    def slow(request):
        time.sleep(0.3)
        return JsonResponse({"pid": os.getpid()})

    def unavailable(request):
        log.info("about to fail")
        return JsonResponse({"error": "try later"}, status=503)

    def boom(request):
        log.info("about to raise")
        raise RuntimeError("kaboom")

    def healthz(request):
        return HttpResponse("ok")

    urlpatterns = [
        path("items/<int:item_id>", item),
        path("slow", slow),
        path("unavailable", unavailable),
        path("boom", boom),
        path("crash", boom),
        path("healthz", healthz),
    ]

    from django.core.wsgi import get_wsgi_application

    app = ClueMiddleware(get_wsgi_application())
    """
)

#: per framework: the app's source, its service name, the item route and how the
#: framework reports a view's exception in the log
APPS = {
    "flask": (FLASK_APP, "wsgi-flask", "/items/<int:item_id>", "Exception on /boom [GET]"),
    "django": (DJANGO_APP, "wsgi-django", "/items/<int:item_id>", "Internal Server Error: /boom"),
}


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    r.start()
    yield r
    r.stop()


def start_gunicorn(
    directory: Path,
    receiver: OTLPReceiver,
    target: str,
    sampler: str = "parentbased_always_off",
    options: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn serving ``target`` from ``directory`` with two sync workers, exporting to
    ``receiver`` only at exit; the process and its base URL once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="600000",
        OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        OTEL_TRACES_SAMPLER=sampler,
        PYTHONPATH=f"{directory}{os.pathsep}{ROOT}",
    )
    command = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync"]
    command += ["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "20", *options, target]
    with (directory / "gunicorn.log").open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output, cwd=directory)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, (directory / "gunicorn.log").read_text()
        assert time.monotonic() < deadline, "gunicorn did not answer"
        try:
            httpx.get(f"{url}/healthz", timeout=1)  # a skip path: no telemetry of its own
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)


def requests(records: list[LogRecord]) -> list[dict[str, Any]]:
    return attributes_of(records, "request")


def attributes_of(records: list[LogRecord], body: str) -> list[dict[str, Any]]:
    return [r.attributes for r in records if r.body == body]


POST_FORK = """
def post_fork(server, worker):
    import clue

    clue.configure(SERVICE)
"""


@pytest.mark.parametrize(
    ("framework", "preload"), [("flask", False), ("django", False), ("flask", True)]
)
def test_a_gunicorn_app_is_traced_logged_measured_and_flushed_at_sigterm(
    tmp_path: Path, receiver: OTLPReceiver, framework: str, preload: bool
) -> None:
    """``preload``: the app is imported by the master before the fork, and each worker
    calls ``clue.configure()`` in gunicorn's ``post_fork`` hook."""
    source, service, route, exception_message = APPS[framework]
    options: list[str] = []
    if preload:
        configure = f'clue.configure("{service}")'
        assert configure in source
        source = source.replace(configure, "")
        (tmp_path / "hooks.py").write_text(POST_FORK.replace("SERVICE", repr(service)))
        options = ["--preload", "--config", "python:hooks"]
    (tmp_path / "service_app.py").write_text(source)
    process, url = start_gunicorn(tmp_path, receiver, "service_app:app", options=options)
    try:
        with httpx.Client(base_url=url) as client:
            traced = client.get("/items/7", headers={"traceparent": TRACEPARENT})
            plain = client.get("/items/8", headers={"X-Request-ID": "req-8"})
            unavailable = client.get("/unavailable")
            boom = client.get("/boom", headers={"X-Request-ID": "r" * 5000})
            crash = client.get("/crash", headers={"traceparent": TRACEPARENT})
            odd = client.get("/items/9", headers={"X-Request-ID": "<script>x</script>"})
            health = client.get("/healthz")
            missing = client.get("/nothing/here", headers={"traceparent": TRACEPARENT})
        # four slow requests at once keep both workers busy: each serves some
        with ThreadPoolExecutor(4) as pool:
            slow = list(
                pool.map(
                    lambda _: httpx.get(f"{url}/slow", headers={"traceparent": TRACEPARENT}),
                    range(4),
                )
            )
        assert receiver.spans() == [] and receiver.logs() == []  # queued until the exit
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "gunicorn.log").read_text()

    assert traced.status_code == 200 and traced.json()["id"] == 7
    assert re.fullmatch(r"[0-9a-f]{16}", traced.headers["x-request-id"])
    assert plain.headers["x-request-id"] == "req-8"
    assert unavailable.status_code == 503
    assert crash.status_code == 500
    assert boom.status_code == 500 and re.fullmatch(r"[0-9a-f]{16}", boom.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{16}", odd.headers["x-request-id"])
    assert health.text == "ok" and "x-request-id" not in health.headers
    assert missing.status_code == 404
    workers = {response.json()["pid"] for response in slow}
    assert len(workers) == 2, "both workers served (and so both flushed at exit)"

    # spans: the sampled requests only, each continuing the caller's trace
    spans = receiver.wait_for(lambda r: len(r.spans()) >= 7 and r.spans())
    expected = ["GET " + route, "GET", "GET /crash"] + ["GET /slow"] * 4
    assert sorted(s.name for s in spans) == sorted(expected), (
        "an unrouted request is named by its method only"
    )
    assert {s.service_name for s in spans} == {service}
    assert {(s.trace_id, s.parent_span_id) for s in spans} == {(TRACE_ID, PARENT_ID)}
    assert len({s.resource["service.instance.id"] for s in spans}) == 2
    [item_span] = [s for s in spans if s.name == "GET " + route]
    assert item_span.attributes["http.route"] == route
    assert item_span.attributes["url.path"] == "/items/7"
    assert item_span.attributes["http.response.status_code"] == 200
    assert item_span.attributes["client.address"] == "127.0.0.1"
    # a view's exception: the span is an error; Django's middleware also records the exception
    # (Flask handles it before the middleware sees it: its traceback is in the log, below)
    [crash_span] = [s for s in spans if s.name == "GET /crash"]
    assert (crash_span.status_code, crash_span.attributes["http.response.status_code"]) == (2, 500)
    events = [e.name for e in crash_span.events]
    assert events == (["exception"] if framework == "django" else [])

    # log records: one request line per observed request, none for /healthz
    records = receiver.wait_for(lambda r: len(requests(r.logs())) >= 11 and r.logs())
    lines = attributes_of(records, "request")
    by_path = {line["path"]: line for line in lines}
    assert len(lines) == 11 and "/healthz" not in by_path
    assert by_path["/items/7"]["request_id"] == traced.headers["x-request-id"]
    assert (by_path["/items/7"]["route"], by_path["/items/7"]["status"]) == (route, 200)
    assert by_path["/items/8"]["request_id"] == "req-8"
    assert by_path["/items/9"]["request_id"] == odd.headers["x-request-id"]
    assert (by_path["/boom"]["status"], by_path["/nothing/here"]["route"]) == (500, "")
    assert all(line["duration_ms"] >= 0 and line["method"] == "GET" for line in lines)
    # buffered info entries: written for the failures only (the traced item's too: sampled)
    assert [r["item_id"] for r in attributes_of(records, "loading item")] == [7]
    [flushed] = attributes_of(records, "about to fail")
    assert flushed["path"] == "/unavailable"
    [before_error] = [e for e in attributes_of(records, "about to raise") if e["path"] == "/boom"]
    [error] = attributes_of(records, exception_message)
    assert before_error["request_id"] == error["request_id"] == boom.headers["x-request-id"]
    assert "kaboom" in error["exception.stacktrace"]
    assert "Traceback" in error["exception.stacktrace"]

    # the duration histogram, from both workers
    histograms = receiver.wait_for(
        lambda r: [m for m in r.metrics() if m.name == "http.server.request.duration"]
    )
    counts: dict[tuple[str, int], int] = {}
    for metric in histograms:
        assert metric.unit == "s" and metric.kind == "histogram"
        for point in metric.points:
            key = (
                point.attributes.get("http.route", ""),
                point.attributes["http.response.status_code"],
            )
            counts[key] = counts.get(key, 0) + (point.count or 0)
    assert counts == {
        (route, 200): 3,
        ("/slow", 200): 4,
        ("/unavailable", 503): 1,
        ("/boom", 500): 1,
        ("/crash", 500): 1,
        ("", 404): 1,
    }
