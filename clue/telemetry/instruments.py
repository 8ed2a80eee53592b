"""Instruments that forward to the real instrument of the meter of the moment.

clue's meters hand these out: each time ``configure()`` swaps the SDK meter
provider, ``on_meter_set`` makes every instrument handed out so far record
into a new real instrument of that provider. Written on the public API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.util.types import Attributes

from clue._otel_internals import Gauge

_I = TypeVar("_I")


class Forwarding(Generic[_I]):
    """Holds the real instrument ``create(meter)`` of the last meter set."""

    def __init__(self, create: Callable[[metrics.Meter], _I], meter: metrics.Meter) -> None:
        self._create = create
        self._real = create(meter)

    def on_meter_set(self, meter: metrics.Meter) -> None:
        """Forward to a real instrument of ``meter`` from now on."""
        self._real = self._create(meter)


class Counter(Forwarding[metrics.Counter], metrics.Counter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._real.add(amount, attributes, context)


class UpDownCounter(Forwarding[metrics.UpDownCounter], metrics.UpDownCounter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._real.add(amount, attributes, context)


class SyncGauge(Forwarding[Any], Gauge):
    def set(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._real.set(amount, attributes, context)


class ObservableCounter(Forwarding[metrics.ObservableCounter], metrics.ObservableCounter):
    """Its callbacks are observed by the real instrument."""


class ObservableUpDownCounter(
    Forwarding[metrics.ObservableUpDownCounter], metrics.ObservableUpDownCounter
):
    """Its callbacks are observed by the real instrument."""


class ObservableGauge(Forwarding[metrics.ObservableGauge], metrics.ObservableGauge):
    """Its callbacks are observed by the real instrument."""
