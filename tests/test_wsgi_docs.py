"""The WSGI examples of docs/integrations.md, run as written under gunicorn.

The Flask example is the application module; the Django examples are the
``MIDDLEWARE`` of a project's settings and its ``wsgi.py``. Each is served by
gunicorn (two sync workers) exporting to an OTLP receiver, flushed at SIGTERM.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from tests.otlp_receiver import OTLPReceiver
from tests.test_middleware_docs import PAGE, examples
from tests.test_wsgi_gunicorn import (
    TRACEPARENT,
    attributes_of,
    receiver,
    requests,
    start_gunicorn,
)

__all__ = ["receiver"]  # the fixture, shared with tests/test_wsgi_gunicorn.py

EXAMPLES = examples(PAGE)

DJANGO_SETTINGS = """\
SECRET_KEY = "docs-example"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "shop.urls"
"""

DJANGO_URLS = """\
from django.http import JsonResponse
from django.urls import path

from clue import log


def product(request, id):
    log.info("loading product", product_id=id)
    if id == "0":
        return JsonResponse({"error": "catalog unavailable"}, status=503)
    return JsonResponse({"id": id, "name": "mug"})


urlpatterns = [path("products/<id>", product)]
"""


def exercise(directory: Path, receiver: OTLPReceiver, target: str, service: str) -> None:
    """A traced, an untraced and a failing request; the telemetry they leave."""
    process, url = start_gunicorn(directory, receiver, target)
    try:
        with httpx.Client(base_url=url) as client:
            traced = client.get("/products/7", headers={"traceparent": TRACEPARENT})
            untraced = client.get("/products/8", headers={"X-Request-ID": "req-8"})
            failing = client.get("/products/0")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (directory / "gunicorn.log").read_text()
    assert traced.json() == {"id": "7", "name": "mug"}
    assert untraced.headers["x-request-id"] == "req-8"
    assert failing.status_code == 503
    assert re.fullmatch(r"[0-9a-f]{16}", failing.headers["x-request-id"])

    [span] = receiver.wait_for(lambda r: r.spans())
    assert (span.name, span.service_name) == ("GET /products/<id>", service)
    assert span.attributes["http.route"] == "/products/<id>"
    records = receiver.wait_for(lambda r: len(requests(r.logs())) >= 3 and r.logs())
    # two workers export their records each on their own, in either order
    lines = sorted(requests(records), key=lambda e: str(e["path"]))
    assert [(e["path"], e["route"], e["status"]) for e in lines] == [
        ("/products/0", "/products/<id>", 503),
        ("/products/7", "/products/<id>", 200),
        ("/products/8", "/products/<id>", 200),
    ]
    assert lines[2]["request_id"] == "req-8"
    # the traced request's entry is written (its trace is kept), the untraced
    # success's dropped, the failure's flushed
    loaded = sorted(attributes_of(records, "loading product"), key=lambda e: str(e["product_id"]))
    assert [e["product_id"] for e in loaded] == ["0", "7"]
    assert loaded[0]["request_id"] == failing.headers["x-request-id"]


def test_the_flask_example_under_gunicorn(tmp_path: Path, receiver: OTLPReceiver) -> None:
    (tmp_path / "shop.py").write_text(EXAMPLES["flask"])
    exercise(tmp_path, receiver, "shop:app", "shop")


def test_the_django_examples_under_gunicorn(tmp_path: Path, receiver: OTLPReceiver) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(DJANGO_SETTINGS + EXAMPLES["django_settings"])
    (package / "urls.py").write_text(DJANGO_URLS)
    (package / "wsgi.py").write_text(EXAMPLES["django_wsgi"])
    exercise(tmp_path, receiver, "shop.wsgi", "shop")
