"""Swappable tracer and meter providers, installed as the OpenTelemetry globals once.

OpenTelemetry lets a process set its global providers only once, but
``clue.configure()`` may run again (new exporters, new resource, tests). The
globals are therefore these proxies; each ``configure()`` swaps the SDK
providers behind them, and tracers, meters and instruments handed out before
the swap follow it (the instrumentations keep the tracer they got at start-up).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackT, NoOpMeterProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NoOpTracerProvider, Span, SpanKind
from opentelemetry.util.types import Attributes

from clue._otel_internals import GAUGE_IS_THE_APIS, Gauge, fell_back
from clue.telemetry import instruments
from clue.telemetry.histograms import ClueHistogram
from clue.telemetry.instruments import Forwarding
from clue.telemetry.roots import FastRoots, SpanStarter


class SwappableTracerProvider(trace.TracerProvider):
    """A tracer provider whose SDK provider can be replaced at any time."""

    def __init__(self) -> None:
        self._current: tuple[int, trace.TracerProvider] = (0, NoOpTracerProvider())

    @property
    def delegate(self) -> trace.TracerProvider:
        """The provider that makes the spans right now."""
        return self._current[1]

    def swap(self, provider: trace.TracerProvider) -> None:
        """Make ``provider`` the one behind every tracer handed out so far and later."""
        self._current = (self._current[0] + 1, provider)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        args = (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        return _SwappableTracer(self, args)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export the ended spans still queued (True when there is nothing to flush)."""
        flush: Callable[[int], bool] | None = getattr(self.delegate, "force_flush", None)
        return True if flush is None else flush(timeout_millis)


class _SwappableTracer(SpanStarter):
    def __init__(self, provider: SwappableTracerProvider, args: tuple[Any, ...]) -> None:
        self._provider = provider
        self._args = args
        self._bound: tuple[int, trace.Tracer] = (-1, trace.NoOpTracer())

    def _tracer(self) -> trace.Tracer:
        generation, tracer = self._bound
        current = self._provider._current
        if generation != current[0]:
            tracer = FastRoots.of(current[1].get_tracer(*self._args))
            self._bound = (current[0], tracer)
        return tracer

    def start_span(  # explicit parameters: a **kwargs pass-through builds a dict per span
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._tracer().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )


class SwappableMeterProvider(metrics.MeterProvider):
    """A meter provider whose SDK provider can be replaced at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delegate: metrics.MeterProvider = NoOpMeterProvider()
        self._meters: dict[tuple[Any, ...], _SwappableMeter] = {}

    @property
    def delegate(self) -> metrics.MeterProvider:
        """The provider that aggregates the measurements right now."""
        return self._delegate

    def swap(self, provider: metrics.MeterProvider) -> None:
        """Rebind every meter and instrument handed out so far to ``provider``."""
        with self._lock:
            self._delegate = provider
            meters = list(self._meters.values())
        for meter in meters:
            meter.bind(provider)

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> metrics.Meter:
        key = (name, version, schema_url, repr(sorted((attributes or {}).items())))
        with self._lock:
            meter = self._meters.get(key)
            if meter is None:
                meter = self._meters[key] = _SwappableMeter(name, version, schema_url)
                meter.bind(self._delegate)
            return meter


class _SwappableMeter(metrics.Meter):
    """Hands out forwarding instruments (one per distinct definition) that follow each swap."""

    def __init__(self, name: str, version: str | None, schema_url: str | None) -> None:
        super().__init__(name, version, schema_url)
        self._scope = InstrumentationScope(name, version, schema_url)
        self._lock = threading.Lock()
        self._real: metrics.Meter = NoOpMeterProvider().get_meter(name)
        self._instruments: dict[tuple[Any, ...], Forwarding[Any] | ClueHistogram] = {}

    def bind(self, provider: metrics.MeterProvider) -> None:
        real = provider.get_meter(self.name, self.version, self.schema_url)
        with self._lock:
            self._real = real
            instruments = list(self._instruments.values())
        for instrument in instruments:
            instrument.on_meter_set(real)

    def _instrument(self, key: tuple[Any, ...], make: Callable[[metrics.Meter], Any]) -> Any:
        with self._lock:
            instrument = self._instruments.get(key)
            if instrument is None:
                instrument = self._instruments[key] = make(self._real)
            return instrument

    def create_counter(self, name: str, unit: str = "", description: str = "") -> metrics.Counter:
        key = ("counter", name, unit, description)
        return self._instrument(  # type: ignore[no-any-return]
            key,
            lambda m: instruments.Counter(lambda r: r.create_counter(name, unit, description), m),
        )

    def create_up_down_counter(
        self, name: str, unit: str = "", description: str = ""
    ) -> metrics.UpDownCounter:
        key = ("updown", name, unit, description)
        return self._instrument(  # type: ignore[no-any-return]
            key,
            lambda m: instruments.UpDownCounter(
                lambda r: r.create_up_down_counter(name, unit, description), m
            ),
        )

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> metrics.Histogram:
        bounds = explicit_bucket_boundaries_advisory
        key = ("histogram", name, unit, description, tuple(bounds) if bounds else None)
        return self._instrument(  # type: ignore[no-any-return]
            key,
            lambda m: ClueHistogram(
                self._scope, name, unit, description, m, explicit_bucket_boundaries_advisory=bounds
            ),
        )

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Gauge:
        if not GAUGE_IS_THE_APIS:
            fell_back("sync-gauge", "gauges that are not the API's _Gauge class")
        key = ("gauge", name, unit, description)
        return self._instrument(  # type: ignore[no-any-return]
            key,
            lambda m: instruments.SyncGauge(lambda r: r.create_gauge(name, unit, description), m),
        )

    def create_observable_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableCounter:
        key = ("obs_counter", name, object())  # callbacks differ: never shared
        return self._instrument(  # type: ignore[no-any-return]
            key,
            lambda m: instruments.ObservableCounter(
                lambda r: r.create_observable_counter(name, callbacks, unit, description), m
            ),
        )

    def create_observable_up_down_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableUpDownCounter:
        key = ("obs_updown", name, object())  # callbacks differ: never shared
        return self._instrument(  # type: ignore[no-any-return]
            key,
            lambda m: instruments.ObservableUpDownCounter(
                lambda r: r.create_observable_up_down_counter(name, callbacks, unit, description), m
            ),
        )

    def create_observable_gauge(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableGauge:
        key = ("obs_gauge", name, object())  # callbacks differ: never shared
        return self._instrument(  # type: ignore[no-any-return]
            key,
            lambda m: instruments.ObservableGauge(
                lambda r: r.create_observable_gauge(name, callbacks, unit, description), m
            ),
        )
