"""RPC duration histograms (OpenTelemetry RPC semantic conventions, milliseconds)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from clue.grpc._rpc import Metadata, RpcInfo
from clue.telemetry import bind


class Durations:
    """One histogram, bound once to the attributes of each (method, status)."""

    def __init__(
        self, name: str, description: str, meter_provider: MeterProvider | None = None
    ) -> None:
        meter = metrics.get_meter("clue.grpc", meter_provider=meter_provider)
        self._histogram = meter.create_histogram(name, unit="ms", description=description)
        self._records: dict[tuple[str, str], Callable[[float], None]] = {}

    def record(self, info: RpcInfo, code: grpc.StatusCode, started: float) -> None:
        """Record the time since ``started`` (a ``time.perf_counter()`` reading)."""
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        key = (info.full, code._name_)  # a str hash: StatusCode's own __hash__ is Python code
        record = self._records.get(key)
        if record is None:
            attributes = {**info.attributes, "rpc.grpc.status_code": code.value[0]}
            record = self._records[key] = bind(self._histogram, attributes)
        record(elapsed_ms)


class ServerMetrics:
    """Server layer recording ``rpc.server.duration``."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._durations = Durations(
            "rpc.server.duration", "Duration of inbound RPCs", meter_provider
        )

    def enter(
        self, info: RpcInfo, context: Any, metadata: Metadata, request: Any
    ) -> tuple[RpcInfo, float]:
        return info, time.perf_counter()

    def exit(
        self,
        state: tuple[RpcInfo, float],
        context: Any,
        code: grpc.StatusCode,
        response: Any,
        exc: BaseException | None,
    ) -> None:
        info, started = state
        self._durations.record(info, code, started)
