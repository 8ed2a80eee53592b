"""What clue's HTTP server middlewares share (``clue.asgi``, ``clue.wsgi``): their options,
the paths they skip, their tracer, and the ``http.server.request.duration`` histogram."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider
from opentelemetry.util.types import AttributeValue

from clue._status import is_http_error
from clue.telemetry import bind

#: Paths the middlewares pass through untouched by default: probes, scrapes, static
#: assets. An entry ending in ``/`` is a prefix.
DEFAULT_SKIP_PATHS = (
    "/healthz",
    "/livez",
    "/readyz",
    "/metrics",
    "/static/",
    "/favicon.ico",
)
# Buckets in seconds recommended by the HTTP semantic conventions.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_MAX_BOUND = 10_000  # recorders kept by (method, route, status, scheme): routes are few

App = TypeVar("App")


class ServerMiddleware(Generic[App]):
    """An HTTP server middleware around ``app``: its options and instruments, under the
    tracer and meter named by the subclass's ``SCOPE`` (``clue.asgi``, ``clue.wsgi``)."""

    SCOPE: str

    def __init__(
        self,
        app: App,
        *,
        log_requests: bool = True,
        skip_paths: Iterable[str] = DEFAULT_SKIP_PATHS,
        log_payloads: bool = True,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        is_error: Callable[[int], bool] = is_http_error,
    ) -> None:
        if not callable(is_error):
            raise ValueError("is_error must be a callable of an HTTP status")
        self.app = app
        self._log_requests = log_requests
        self._is_error = is_error
        skip = tuple(skip_paths)
        self._skip = frozenset(path for path in skip if not path.endswith("/"))
        self._skip_under = tuple(path for path in skip if path.endswith("/"))
        self._log_payloads = log_payloads
        self._tracer = trace.get_tracer(self.SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(self.SCOPE, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self._records: dict[tuple[str, str | None, int, str], Callable[[float], None]] = {}
        # the global propagator its header names were read from
        self._propagator: TextMapPropagator | None = None

    def skips(self, path: str) -> bool:
        """Whether requests for ``path`` are passed through unobserved (``skip_paths``)."""
        return path in self._skip or path.startswith(self._skip_under)

    def record(self, method: str, route: str | None, status: int, scheme: str, s: float) -> None:
        """One request's duration, ``s`` seconds."""
        key = (method, route, status, scheme)
        record = self._records.get(key)
        if record is None:
            attributes: dict[str, AttributeValue] = {
                "http.request.method": method,
                "http.response.status_code": status,
                "url.scheme": scheme,
            }
            if route:
                attributes["http.route"] = route
            record = bind(self._duration, attributes)
            if len(self._records) < _MAX_BOUND:
                self._records[key] = record
        record(s)
