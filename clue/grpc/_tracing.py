"""Server tracing layer: a lean span per call on the OpenTelemetry API (RPC conventions)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from clue._status import is_grpc_error
from clue.grpc import _messages
from clue.grpc._rpc import Metadata, RpcInfo, is_expected


class ServerTracing:
    """Continue the caller's trace from the metadata and time the call in a SERVER span."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        is_error: Callable[[grpc.StatusCode], bool] = is_grpc_error,
    ) -> None:
        self._tracer = trace.get_tracer("clue.grpc", tracer_provider=tracer_provider)
        self._is_error = is_error
        self._propagator: Any = None
        self._fields: frozenset[str] = frozenset()

    def _propagation_fields(self) -> frozenset[str]:
        """Metadata keys the global propagator reads (recomputed when it is replaced)."""
        propagator = propagate.get_global_textmap()
        if propagator is not self._propagator:
            self._fields = frozenset(field.lower() for field in propagator.fields)
            self._propagator = propagator
        return self._fields

    def enter(
        self, info: RpcInfo, context: Any, metadata: Metadata, request: Any
    ) -> tuple[trace.Span, object]:
        parent = otel_context.get_current()  # read once, for the span and its context
        if metadata:
            fields = self._propagation_fields()
            carrier = None
            for key, value in metadata:  # a loop, not a comprehension: no frame per call
                if key in fields:
                    carrier = carrier or {}
                    carrier[key] = value
            if carrier:  # no trace context sent: skip the propagators
                parent = propagate.extract(carrier, parent)
        span = self._tracer.start_span(
            info.name, context=parent, kind=SpanKind.SERVER, attributes=info.attributes
        )
        if span.is_recording():  # most calls are not sampled: no peer parsing for them
            span.set_attributes(_peer_attributes(context.peer()))
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    def message(
        self, state: tuple[trace.Span, object], sent: bool, number: int, message: Any
    ) -> None:
        """An ``rpc.message`` event for a message of a stream (among the first)."""
        _messages.record(state[0], sent, number, message)

    def counted(
        self, state: tuple[trace.Span, object], sent: int | None, received: int | None
    ) -> None:
        """A stream's counts of messages, on its span."""
        _messages.counts(state[0], sent, received)

    def exit(
        self,
        state: tuple[trace.Span, object],
        context: Any,
        code: grpc.StatusCode,
        response: Any,
        exc: BaseException | None,
    ) -> None:
        span, token = state
        try:
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code is not grpc.StatusCode.OK and self._is_error(code):
                    description = context.details() or (
                        f"{type(exc).__name__}: {exc}" if exc is not None else code.name
                    )
                    span.set_status(Status(StatusCode.ERROR, str(description)))
                if not is_expected(exc):
                    span.record_exception(exc)  # type: ignore[arg-type]
            span.end()
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def _peer_attributes(peer: str) -> dict[str, AttributeValue]:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> network.peer.address and .port
    (cached: a connection's calls share their peer)."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return {}
    host, _, port = address.rpartition(":")
    attributes: dict[str, AttributeValue] = {"network.peer.address": host.strip("[]")}
    if port.isdigit():
        attributes["network.peer.port"] = int(port)
    return attributes
