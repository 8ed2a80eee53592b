"""Prometheus exposition of the OpenTelemetry metrics (the ``/metrics`` of the admin port)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader

from clue.telemetry import siblings

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def reader() -> MetricReader:
    """A metric reader that serves the metrics from prometheus-client's default registry."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    return PrometheusMetricReader()


class MetricsApp:
    """ASGI app answering with the Prometheus text exposition of the default registry.

    A class instance rather than a function, so that Starlette's ``Route`` and
    ``Mount`` both treat it as an ASGI app.
    """

    def __init__(self) -> None:
        from prometheus_client import REGISTRY, make_asgi_app

        self._app: ASGIApp = make_asgi_app(REGISTRY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shared = siblings.workers_dir() if scope["type"] == "http" else None
        if shared is None:
            await self._app(scope, receive, send)
            return
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await siblings.gather(shared)  # every worker's, summed
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def metrics_app() -> MetricsApp:
    """The ASGI app to serve at ``/metrics``.

    It serves prometheus-client's default registry: the OpenTelemetry metrics
    once ``configure(prometheus=True)`` (or ``OTEL_METRICS_EXPORTER=prometheus``)
    ran, plus the process and Python collectors of prometheus-client. With
    ``CLUE_WORKERS_DIR`` set (a directory every worker of a pre-fork server
    shares), it answers with the sum of every worker's.
    """
    return MetricsApp()
