"""The one path every received request takes: decode, store, forward, answer."""

from __future__ import annotations

import threading

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from clue.collector import otlp
from clue.collector.forwarder import Forwarder
from clue.collector.store import Store


class Ingest:
    """Turns parsed export requests into stored rows and an OTLP response."""

    def __init__(self, store: Store, forwarder: Forwarder | None = None) -> None:
        self.store = store
        self.forwarder = forwarder
        self.received = {"traces": 0, "metrics": 0, "logs": 0}
        self.rejected = {"traces": 0, "metrics": 0, "logs": 0}
        self.truncated = {"traces": 0, "metrics": 0, "logs": 0}
        self._counting = threading.Lock()

    def export(self, signal: str, request: Message, raw: bytes | None = None) -> Message:
        """Store *request* (of *signal*) and return the response to send back."""
        decoded = otlp.decode(signal, request)
        self.store.add(signal, decoded)
        with self._counting:
            self.received[signal] += len(decoded.rows)
            self.rejected[signal] += decoded.rejected
            self.truncated[signal] += decoded.truncated
        if self.forwarder is not None:
            self.forwarder.submit(signal, raw if raw is not None else request.SerializeToString())
        return response(signal, decoded.rejected, _message(decoded))


def _message(decoded: otlp.Decoded) -> str:
    """Why items were rejected, and (a warning, as OTLP allows) how many texts were cut."""
    notes = [decoded.error] if decoded.error else []
    if decoded.truncated:
        notes.append(
            f"{decoded.truncated} names or values longer than the collector's limits were "
            f"truncated (names {otlp.NAME_LIMIT}, values {otlp.VALUE_LIMIT}, "
            f"log bodies {otlp.BODY_LIMIT} characters)"
        )
    return "; ".join(notes)


def response(signal: str, rejected: int = 0, error: str = "") -> Message:
    """The export response of *signal*, with a partial success when items were rejected
    or *error* carries a warning (then with zero rejected, as OTLP prescribes)."""
    if signal == "traces":
        if rejected or error:
            return ExportTraceServiceResponse(
                partial_success=ExportTracePartialSuccess(
                    rejected_spans=rejected, error_message=error
                )
            )
        return ExportTraceServiceResponse()
    if signal == "metrics":
        if rejected or error:
            return ExportMetricsServiceResponse(
                partial_success=ExportMetricsPartialSuccess(
                    rejected_data_points=rejected, error_message=error
                )
            )
        return ExportMetricsServiceResponse()
    if rejected or error:
        return ExportLogsServiceResponse(
            partial_success=ExportLogsPartialSuccess(
                rejected_log_records=rejected, error_message=error
            )
        )
    return ExportLogsServiceResponse()
