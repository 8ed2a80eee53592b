"""Histograms that clue aggregates itself, collected into the readers of ``configure()``.

The SDK's ``Histogram.record`` copies, cleans and hashes the attributes of
every measurement before it touches a bucket, though a server records the
same few attribute sets over and over (what that costs a request:
docs/performance.md). The histograms handed out by
clue's meters (``clue.telemetry.meter``, or any meter once ``configure()``
made clue's provider the global one) aggregate in place instead: the
attributes are cleaned once per distinct set, and a record looks its set up
and appends the amount with its context and time to a list. Every ``BATCH``
records, and before each collection, the list is aggregated in one pass (a
bisection and a few additions each): inside a busy server, that work costs
several times less in a batch than spread over the requests.

Every metric reader of the SDK meter provider that ``configure()`` builds
gets these histograms added to what it collects, with its own temporality
(cumulative, or delta when it prefers it), so they are exported, served at
``/metrics`` and read by in-memory readers exactly like the SDK's, exemplars
included (the last one of each bucket per collection, as the SDK's default
reservoir keeps). What the SDK would add and these do not: views
(``configure()`` takes none). Where the SDK's reader internals are not as
expected, the histograms fall back to the SDK's own recording.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics import Histogram as SDKHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import Attributes

from clue._otel_internals import (
    collect_hooks,
    ids_of,
    is_sampled,
    span_context_in,
    temporalities,
    wrap_collect,
)
from clue.telemetry.forked import in_child
from clue.telemetry.instruments import Forwarding

_logger = logging.getLogger(__name__)

# The SDK's defaults: bucket boundaries for histograms without advice, and the
# number of attribute sets per instrument before the overflow set is used.
DEFAULT_BOUNDARIES = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0,
                      2500.0, 5000.0, 7500.0, 10000.0)  # fmt: skip
CARDINALITY_LIMIT = 2000
BATCH = 256  # measurements aggregated together at the latest (collections take them all)
_EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")
_OVERFLOW: Mapping[str, Any] = {"otel.metric.overflow": True}
_Collect = Callable[..., MetricsData | None]


class _Window:
    """The aggregation of one attribute set for one reader, since ``start_ns``."""

    __slots__ = ("count", "counts", "exemplars", "max", "min", "start_ns", "total")

    def __init__(self, buckets: int, start_ns: int) -> None:
        self.counts = [0] * buckets
        self.exemplars: dict[int, Exemplar] = {}  # bucket: the last exemplar seen in it
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.start_ns = start_ns


class _Series:
    """One attribute set of a histogram: its cleaned attributes and a window per reader."""

    __slots__ = ("attributes", "windows")

    def __init__(self, attributes: Mapping[str, Any], windows: list[_Window]) -> None:
        self.attributes = attributes
        self.windows = windows


class ClueHistogram(Forwarding[metrics.Histogram], metrics.Histogram):
    """A histogram aggregated in place while clue's readers are attached (see module doc).

    It also forwards to a histogram of the SDK meter of the moment, which records
    when clue's aggregation cannot be used.
    """

    def __init__(
        self,
        scope: InstrumentationScope,
        name: str,
        unit: str,
        description: str,
        meter: metrics.Meter,
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> None:
        bounds = explicit_bucket_boundaries_advisory
        super().__init__(
            lambda real: real.create_histogram(
                name, unit, description, explicit_bucket_boundaries_advisory=bounds
            ),
            meter,
        )
        self.scope = scope
        self._name, self._unit, self._description = name, unit, description
        self._bounds = tuple(float(b) for b in (DEFAULT_BOUNDARIES if bounds is None else bounds))
        self._lock = threading.Lock()
        self._series: dict[frozenset[Any], _Series] = {}
        self._slots: tuple[int, ...] = ()  # ids of the readers' aggregations, in window order
        # (amount, series, context, time) recorded but not aggregated yet
        self._pending: list[tuple[float, _Series, Context, int]] = []
        self.exemplar_filter = "trace_based"
        self._warned = False
        in_child(self._renew_lock)
        REGISTRY.add(self)

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()  # a collection under way in the parent holds it

    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        """Add ``amount`` (finite, not negative) to the buckets of ``attributes``."""
        if self._slots:
            self._add(amount, _key(attributes), attributes, context)
        else:
            self._real.record(amount, attributes, context)

    def bind(self, attributes: Attributes) -> Callable[[float], None]:
        """``record`` for one attribute set, whose lookup key is computed once here (the
        attributes must not change afterwards)."""
        key = _key(attributes)

        def record(amount: float) -> None:
            if self._slots:
                self._add(amount, key, attributes, None)
            else:
                self._real.record(amount, attributes)

        return record

    def _add(
        self, amount: float, key: frozenset[Any], attributes: Attributes, context: Context | None
    ) -> None:
        if not 0.0 <= amount < math.inf:
            self._warn(amount)
            return
        series = self._series.get(key)
        if series is None:  # made now, while the attributes are the caller's of this call
            with self._lock:
                series = self._series.get(key) or self._new_series(key, attributes)
        pending = self._pending
        pending.append(
            (amount, series, get_current() if context is None else context, time.time_ns())
        )
        if len(pending) >= BATCH:
            with self._lock:
                self._aggregate()

    def _aggregate(self) -> None:
        """Add the waiting measurements to the windows (the lock is held)."""
        pending = self._pending
        batch = pending[:]  # measurements recorded meanwhile wait for the next batch
        del pending[: len(batch)]
        bounds, exemplars = self._bounds, self.exemplar_filter
        for amount, series, context, when in batch:
            index = bisect_left(bounds, amount)
            exemplar = None
            if exemplars != "always_off":
                span = span_context_in(context)
                if is_sampled(span) or exemplars == "always_on":
                    trace_id, span_id = ids_of(span) or (None, None)
                    exemplar = Exemplar({}, amount, when, span_id, trace_id)
            for window in series.windows:
                window.counts[index] += 1
                window.count += 1
                window.total += amount
                if amount < window.min:
                    window.min = amount
                if amount > window.max:
                    window.max = amount
                if exemplar is not None:
                    window.exemplars[index] = exemplar

    def _new_series(self, key: frozenset[Any], attributes: Attributes) -> _Series:
        if len(self._series) >= CARDINALITY_LIMIT - 1:
            key, attributes = frozenset(_OVERFLOW.items()), _OVERFLOW
            series = self._series.get(key)
            if series is not None:
                return series
        now = time.time_ns()
        windows = [_Window(len(self._bounds) + 1, now) for _ in self._slots]
        cleaned = BoundedAttributes(attributes=attributes or {}, immutable=True)
        series = self._series[key] = _Series(cleaned, windows)
        return series

    def _warn(self, amount: float) -> None:
        if not self._warned:
            self._warned = True
            _logger.warning(
                "histogram %s ignores %r: amounts must be finite and not negative",
                self._name,
                amount,
            )

    def set_slots(self, slots: tuple[int, ...]) -> None:
        """Aggregate for these readers from now on (kept windows carry on, new ones start)."""
        with self._lock:
            self._aggregate()  # what was recorded for the readers of the moment
            kept = {slot: at for at, slot in enumerate(self._slots)}  # slot: window index
            now = time.time_ns()
            for key, series in list(self._series.items()):
                windows = [
                    series.windows[kept[s]] if s in kept else _Window(len(self._bounds) + 1, now)
                    for s in slots
                ]
                if not slots:
                    del self._series[key]
                else:
                    series.windows = windows
            self._slots = slots

    def collect(self, slot: int, temporality: AggregationTemporality) -> Metric | None:
        """The data points of reader ``slot``; with delta temporality its windows restart."""
        now = time.time_ns()
        points = []
        with self._lock:
            if slot not in self._slots:
                return None
            self._aggregate()
            at = self._slots.index(slot)
            for series in self._series.values():
                window = series.windows[at]
                if window.count == 0:
                    continue
                points.append(
                    HistogramDataPoint(
                        attributes=series.attributes,
                        start_time_unix_nano=window.start_ns,
                        time_unix_nano=now,
                        count=window.count,
                        sum=window.total,
                        bucket_counts=tuple(window.counts),
                        explicit_bounds=self._bounds,
                        min=window.min,
                        max=window.max,
                        exemplars=[window.exemplars[i] for i in sorted(window.exemplars)],
                    )
                )
                window.exemplars = {}  # as the SDK's reservoirs: each collection its own
                if temporality is AggregationTemporality.DELTA:
                    series.windows[at] = _Window(len(self._bounds) + 1, now)
        if not points:
            return None
        return Metric(self._name, self._description, self._unit, Histogram(points, temporality))


def bind(histogram: metrics.Histogram, attributes: Attributes) -> Callable[[float], None]:
    """``histogram.record`` with ``attributes`` fixed (a clue histogram looks them up faster
    this way); the attributes must not change afterwards."""
    if isinstance(histogram, ClueHistogram):
        return histogram.bind(attributes)
    return functools.partial(histogram.record, attributes=attributes)


def _key(attributes: Attributes) -> frozenset[Any]:
    if not attributes:
        return frozenset()
    try:
        return frozenset(attributes.items())
    except TypeError:  # sequence values
        return frozenset(
            (k, tuple(v) if isinstance(v, Sequence) and not isinstance(v, str | bytes) else v)
            for k, v in attributes.items()
        )


class Registry:
    """The clue histograms of the process and the readers they are collected into."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._histograms: list[ClueHistogram] = []
        self._slots: tuple[int, ...] = ()
        self._next_slot = 0
        self.exemplar_filter = "trace_based"
        self._resources: dict[int, Resource] = {}  # per reader slot, when the SDK has no data
        in_child(self._after_fork)

    def _after_fork(self) -> None:
        """A forked child renews the lock (a collection under way in the parent holds it)
        and takes its own ``service.instance.id``, as the SDK's providers do."""
        self._lock = threading.Lock()
        instance = Resource.create().attributes.get(SERVICE_INSTANCE_ID)
        if instance is not None:
            own = Resource({SERVICE_INSTANCE_ID: instance})
            self._resources = {slot: r.merge(own) for slot, r in self._resources.items()}

    def resource(self, slot: int) -> Resource:
        """The resource the histograms of reader ``slot`` are reported under."""
        return self._resources.get(slot, Resource.get_empty())

    def add(self, histogram: ClueHistogram) -> None:
        """Register a new histogram: it aggregates for the readers attached now and later."""
        with self._lock:
            self._histograms.append(histogram)
            histogram.exemplar_filter = self.exemplar_filter
            histogram.set_slots(self._slots)

    def attach(self, readers: Sequence[MetricReader], resource: Resource) -> tuple[int, ...]:
        """Add the clue histograms to what each of ``readers`` (of one meter provider)
        collects; the readers' slots, to `detach` after the provider shut down.

        The exemplar filter is read from ``OTEL_METRICS_EXEMPLAR_FILTER`` as the
        SDK does (``trace_based`` by default: exemplars of sampled spans only).
        """
        if not collect_hooks(readers):
            return ()  # the SDK aggregates the histograms instead
        wanted = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based").strip().lower()
        self.exemplar_filter = wanted if wanted in _EXEMPLAR_FILTERS else "trace_based"
        slots: list[int] = []
        with self._lock:
            for reader in readers:
                slot = self._next_slot
                self._next_slot += 1
                slots.append(slot)
                temporality = _temporality(reader)
                self._resources[slot] = resource
                merging = functools.partial(
                    _merging, registry=self, slot=slot, temporality=temporality
                )
                wrap_collect(reader, merging)
            self._set_slots(self._slots + tuple(slots))
        return tuple(slots)

    def detach(self, slots: tuple[int, ...]) -> None:
        """Stop aggregating for the readers of these slots."""
        with self._lock:
            self._set_slots(tuple(s for s in self._slots if s not in slots))

    def aggregate_only(self, slots: tuple[int, ...]) -> tuple[int, ...]:
        """Aggregate for the readers of ``slots`` alone (the others' windows start over when
        they are given back); the slots aggregated for until now. For clue.testing."""
        with self._lock:
            before = self._slots
            self._set_slots(slots)
        return before

    def _set_slots(self, slots: tuple[int, ...]) -> None:
        self._slots = slots
        for histogram in self._histograms:
            histogram.exemplar_filter = self.exemplar_filter
            histogram.set_slots(slots)

    def scope_metrics(self, slot: int, temporality: AggregationTemporality) -> list[ScopeMetrics]:
        """The data of every histogram for reader ``slot``, grouped by instrumentation scope."""
        with self._lock:
            histograms = list(self._histograms)
        scopes: dict[InstrumentationScope, list[Metric]] = {}
        for histogram in histograms:
            metric = histogram.collect(slot, temporality)
            if metric is not None:
                scopes.setdefault(histogram.scope, []).append(metric)
        return [
            ScopeMetrics(scope, found, scope.schema_url or "") for scope, found in scopes.items()
        ]


def _temporality(reader: MetricReader) -> AggregationTemporality:
    """The temporality ``reader`` wants for histograms (its map is keyed by SDK classes)."""
    for kind, temporality in temporalities(reader).items():
        if isinstance(kind, type) and issubclass(kind, SDKHistogram):
            return temporality  # type: ignore[no-any-return]
    return AggregationTemporality.CUMULATIVE


def _merging(
    collect: _Collect,
    registry: Registry,
    slot: int,
    temporality: AggregationTemporality,
) -> _Collect:
    """``collect`` with the clue histograms of ``slot`` added to its result."""

    def merged(reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
        data = collect(reader, timeout_millis=timeout_millis)
        extra = registry.scope_metrics(slot, temporality)
        if not extra:
            return data
        if data is None or not data.resource_metrics:
            resource = registry.resource(slot)
            return MetricsData([ResourceMetrics(resource, extra, resource.schema_url or "")])
        first, *rest = data.resource_metrics
        scopes = {sm.scope: sm for sm in first.scope_metrics}
        for sm in extra:
            known = scopes.get(sm.scope)
            scopes[sm.scope] = (
                sm
                if known is None
                else ScopeMetrics(sm.scope, [*known.metrics, *sm.metrics], known.schema_url)
            )
        return MetricsData(
            [ResourceMetrics(first.resource, list(scopes.values()), first.schema_url), *rest]
        )

    return merged


REGISTRY = Registry()
