"""Client interceptors: a CLIENT span, the trace context and the current request id in
the metadata, a duration metric and a log entry per outgoing call (a warning when it
fails); on a streaming call, an event a message on its span."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
import grpc.aio
from opentelemetry import propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from clue import log
from clue._request_id import HEADER
from clue.grpc._messages import Counted, Received, Tally, counted, counts
from clue.grpc._metrics import Durations
from clue.grpc._rpc import RpcInfo, error_code, rpc_info


class _Observer:
    """Starts and finishes the observation of outgoing calls (shared by sync and aio)."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer("clue.grpc", tracer_provider=tracer_provider)
        self._durations = Durations(
            "rpc.client.duration", "Duration of outbound RPCs", meter_provider
        )

    def start(self, method: str | bytes, metadata: Any) -> tuple[_Call, list[tuple[str, Any]]]:
        """A started call and the metadata to send (with the trace context, and the request
        id of the current scope unless the caller's metadata names one)."""
        info = rpc_info(method)
        span = self._tracer.start_span(info.name, kind=SpanKind.CLIENT, attributes=info.attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        sent = [*(tuple(item) for item in metadata or ()), *carrier.items()]
        request_id = log.outgoing_request_id()
        if request_id is not None and not any(item[0] == HEADER for item in sent):
            sent.append((HEADER, request_id))
        return _Call(self._durations, info, span, time.perf_counter()), sent


class _Call:
    __slots__ = ("durations", "info", "received", "sent", "span", "started")

    def __init__(self, durations: Durations, info: RpcInfo, span: trace.Span, started: float):
        self.durations = durations
        self.info = info
        self.span = span
        self.started = started
        self.sent: Tally | None = None  # the directions that are streams
        self.received: Received | None = None

    def finish(self, code: grpc.StatusCode, details: str | None, cancelled: bool = False) -> None:
        """End the observation; ``cancelled``: grpc says the call was cancelled (mostly by
        its caller: leaving a Watch or a stream early), which is not a failure."""
        self.durations.record(self.info, code, self.started)
        duration_ms = round((time.perf_counter() - self.started) * 1000.0, 3)
        ok = code is grpc.StatusCode.OK or (cancelled and code is grpc.StatusCode.CANCELLED)
        if self.sent is not None or self.received is not None:
            sent = None if self.sent is None else self.sent.count
            counts(self.span, sent, None if self.received is None else self.received.count)
        if self.span.is_recording():
            self.span.set_attribute("rpc.grpc.status_code", code.value[0])
            if not ok:
                self.span.set_status(Status(StatusCode.ERROR, details or code.name))
        self.span.end()
        if ok:
            log.info("grpc call", method=self.info.full, code=code.name, duration_ms=duration_ms)
        else:
            log.warn(
                "grpc call failed",
                method=self.info.full,
                code=code.name,
                details=details or "",
                duration_ms=duration_ms,
            )


# --- grpc.aio ---------------------------------------------------------------------------


class _AioClientInterceptor:
    """Shared part of the ``grpc.aio`` interceptors: one per call kind, as grpc.aio
    files each interceptor under the first kind it implements."""

    def __init__(self, observer: _Observer, pending: set[asyncio.Task[None]]) -> None:
        self._observer = observer
        self._pending = pending

    def _details(self, details: Any) -> tuple[_Call, grpc.aio.ClientCallDetails]:
        call, metadata = self._observer.start(details.method, details.metadata)
        new = grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*metadata),
            details.credentials,
            details.wait_for_ready,
        )
        return call, new

    async def _streaming(
        self,
        continuation: Any,
        client_call_details: Any,
        request: Any,
        requests: bool,
        responses: bool,
    ) -> Any:
        """A call with a stream of requests, of responses, or both."""
        call, details = self._details(client_call_details)
        if requests:
            call.sent = Tally(call.span, sent=True)
            request = counted(request, call.sent)
        try:
            rpc = await continuation(details, request)
        except BaseException as exc:  # CancelledError: the caller cancelled the call
            call.finish(error_code(exc), _details_of(exc), isinstance(exc, asyncio.CancelledError))
            raise
        received = call.received = Received(call.span) if responses else None
        task = asyncio.ensure_future(_finish_when_done(call, rpc, received))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        if received is None:
            return rpc
        # grpc.aio takes an iterator for the call: the call it made keeps its other methods
        return _AsyncResponses(aiter(rpc), received)


class _AioUnaryUnary(_AioClientInterceptor, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        call, details = self._details(client_call_details)
        try:
            rpc = await continuation(details, request)
            await rpc
        except BaseException as exc:  # CancelledError: the caller cancelled the call
            call.finish(error_code(exc), _details_of(exc), isinstance(exc, asyncio.CancelledError))
            raise
        call.finish(grpc.StatusCode.OK, None)
        return rpc


class _AioUnaryStream(_AioClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self._streaming(continuation, client_call_details, request, False, True)


class _AioStreamUnary(_AioClientInterceptor, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._streaming(
            continuation, client_call_details, request_iterator, True, False
        )


class _AioStreamStream(_AioClientInterceptor, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._streaming(
            continuation, client_call_details, request_iterator, True, True
        )


def async_client_interceptors(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> list[Any]:
    """One ``grpc.aio`` interceptor per call kind, sharing their span and metric set-up."""
    observer = _Observer(tracer_provider, meter_provider)
    pending: set[asyncio.Task[None]] = set()
    kinds = (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)
    return [kind(observer, pending) for kind in kinds]


class _AsyncResponses:
    """The responses of a ``grpc.aio`` streaming call, each recorded as it is read."""

    __slots__ = ("_messages", "_received")

    def __init__(self, messages: Any, received: Received) -> None:
        self._messages = messages
        self._received = received

    def __aiter__(self) -> _AsyncResponses:
        return self

    async def __anext__(self) -> Any:
        return await self._received.aread(self._messages.__anext__)


async def _finish_when_done(call: _Call, rpc: Any, received: Received | None) -> None:
    try:
        code = await rpc.code()
        details = await rpc.details()
    except asyncio.CancelledError:
        call.finish(grpc.StatusCode.CANCELLED, "cancelled")
        raise
    if received is None:
        call.finish(code, details, cancelled=rpc.cancelled())
    else:  # after the read that takes the last message, if one is under way
        received.end(lambda: call.finish(code, details, cancelled=rpc.cancelled()))


def _details_of(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        details = exc.details()
        if isinstance(details, str):
            return details
    return f"{type(exc).__name__}: {exc}"


# --- grpc (sync) ------------------------------------------------------------------------


class _SyncDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _SyncCallDetails(_SyncDetails, grpc.ClientCallDetails):
    """grpc.ClientCallDetails has no constructor: a named tuple implementing it."""


class ClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Observes every kind of ``grpc`` (sync) call."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._observer = _Observer(tracer_provider, meter_provider)

    def _call(
        self,
        continuation: Callable[..., Any],
        details: Any,
        request: Any,
        requests: bool = False,
        responses: bool = False,
    ) -> Any:
        """One call; ``requests``, ``responses``: which of them are streams."""
        call, metadata = self._observer.start(details.method, details.metadata)
        if requests:
            call.sent = Tally(call.span, sent=True)
            request = Counted(iter(request), call.sent)
        new = _SyncCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        try:
            outcome = continuation(new, request)
        except BaseException as exc:
            call.finish(error_code(exc), _details_of(exc))
            raise
        if not responses:
            outcome.add_done_callback(lambda done: _finish_sync(call, done))
            return outcome
        received = call.received = Received(call.span)
        # after the read that takes the last message, if one is under way
        outcome.add_done_callback(lambda done: received.end(lambda: _finish_sync(call, done)))
        return _Responses(outcome, received)

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request, responses=True)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request_iterator, requests=True)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return self._call(
            continuation, client_call_details, request_iterator, requests=True, responses=True
        )


class _Responses:
    """A ``grpc`` streaming call, its responses recorded as they are read (every other
    attribute is the call's own: ``code()``, ``cancel()``...)."""

    __slots__ = ("_call", "_received")

    def __init__(self, call: Any, received: Received) -> None:
        self._call = call
        self._received = received

    def __iter__(self) -> _Responses:
        return self

    def __next__(self) -> Any:
        return self._received.read(self._call.__next__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def _finish_sync(call: _Call, done: Any) -> None:
    code = done.code()
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = done.details() if code is not grpc.StatusCode.OK else None
    call.finish(code, details, cancelled=done.cancelled())
