"""clue.grpc through real gRPC servers and clients on loopback (aio and sync).

The service under test is a tiny echo service built from grpc's generic method
handlers and protobuf's well-known types, so no generated code is needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.struct_pb2 import Struct
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

import clue.grpc
from clue import log
from tests.conftest import Lines

SERVICE = "clue.test.Echo"
S = StringValue

# --- the echo service ----------------------------------------------------------------


async def aio_unary(request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """Echo; ``abort:<CODE>`` aborts, ``raise`` raises, ``log`` logs an info entry first."""
    log.info("handling", value=request.value)
    if request.value.startswith("abort:"):
        await context.abort(grpc.StatusCode[request.value[6:]], "aborted on purpose")
    if request.value == "raise":
        raise ValueError("boom")
    return request


async def aio_server_stream(request: StringValue, context: Any) -> AsyncIterator[StringValue]:
    for i in range(3):
        if request.value == "abort" and i == 2:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "enough")
        yield S(value=f"{request.value}-{i}")


async def aio_client_stream(requests: AsyncIterator[StringValue], context: Any) -> StringValue:
    return S(value="+".join([r.value async for r in requests]))


async def aio_bidi(requests: AsyncIterator[StringValue], context: Any) -> AsyncIterator[Any]:
    async for r in requests:
        yield S(value=r.value.upper())


async def aio_struct(request: Struct, context: Any) -> Struct:
    return request


def sync_unary(request: StringValue, context: grpc.ServicerContext) -> StringValue:
    log.info("handling", value=request.value)
    if request.value.startswith("abort:"):
        context.abort(grpc.StatusCode[request.value[6:]], "aborted on purpose")
    if request.value == "raise":
        raise ValueError("boom")
    return request


def sync_server_stream(request: StringValue, context: Any) -> Iterator[StringValue]:
    for i in range(3):
        yield S(value=f"{request.value}-{i}")


def echo_handlers(aio: bool) -> grpc.GenericRpcHandler:
    """The echo service's generic handler (async behaviours when ``aio``)."""
    ser = {"request_deserializer": S.FromString, "response_serializer": S.SerializeToString}
    methods = {
        "Unary": grpc.unary_unary_rpc_method_handler(aio_unary if aio else sync_unary, **ser),
        "ServerStream": grpc.unary_stream_rpc_method_handler(
            aio_server_stream if aio else sync_server_stream, **ser
        ),
        "ClientStream": grpc.stream_unary_rpc_method_handler(aio_client_stream, **ser),
        "Bidi": grpc.stream_stream_rpc_method_handler(aio_bidi, **ser),
        "Struct": grpc.unary_unary_rpc_method_handler(
            aio_struct,
            request_deserializer=Struct.FromString,
            response_serializer=Struct.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def stub(channel: Any, name: str, kind: str = "unary_unary", msg: Any = S) -> Any:
    """A multi-callable for one echo method."""
    return getattr(channel, kind)(
        f"/{SERVICE}/{name}",
        request_serializer=msg.SerializeToString,
        response_deserializer=msg.FromString,
    )


# --- fixtures ------------------------------------------------------------------------


class Telemetry:
    """Private SDK providers with in-memory span and metric readers."""

    def __init__(self, sampled: bool = True) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(**({} if sampled else {"sampler": ALWAYS_OFF}))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], int]]:
        """(attributes, count) of every data point of histogram ``name``."""
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        assert metric.unit == "ms"
                        found += [(dict(p.attributes), p.count) for p in metric.data.data_points]
        return found


class AioServer:
    """A grpc.aio echo server with clue's interceptors on a free loopback port."""

    def __init__(self, telemetry: Telemetry, wiring: str = "interceptors", **options: Any) -> None:
        if wiring == "interceptors":
            self.server = grpc.aio.server(
                interceptors=clue.grpc.async_server_interceptors(**telemetry.providers(), **options)
            )
        else:  # clue.grpc.instrument: handlers wrapped when added through it
            self.server = clue.grpc.instrument(
                grpc.aio.server(), **telemetry.providers(), **options
            )
        self.server.add_generic_rpc_handlers([echo_handlers(aio=True)])
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.telemetry = telemetry

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(
            f"127.0.0.1:{self.port}",
            interceptors=clue.grpc.async_client_interceptors(**self.telemetry.providers()),
        )


async def start_aio(
    telemetry: Telemetry, wiring: str = "interceptors", **options: Any
) -> AioServer:
    server = AioServer(telemetry, wiring, **options)
    await server.server.start()
    return server


def server_spans(telemetry: Telemetry) -> list[ReadableSpan]:
    return [s for s in telemetry.finished() if s.kind is SpanKind.SERVER]


# --- aio server ------------------------------------------------------------------------


WIRINGS = pytest.mark.parametrize("wiring", ["interceptors", "instrument"])


@WIRINGS
async def test_aio_unary_ok_traces_logs_and_measures(lines: Lines, wiring: str) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry, wiring)
    try:
        async with server.channel() as channel:
            assert (await stub(channel, "Unary")(S(value="hi"))).value == "hi"
    finally:
        await server.server.stop(None)

    spans = {s.kind: s for s in telemetry.finished()}
    srv, cli = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert srv.name == cli.name == f"{SERVICE}/Unary"
    assert srv.parent is not None and srv.parent.span_id == cli.context.span_id
    assert srv.context.trace_id == cli.context.trace_id
    attributes = dict(srv.attributes or {})
    assert attributes["rpc.system"] == "grpc"
    assert attributes["rpc.service"] == SERVICE
    assert attributes["rpc.method"] == "Unary"
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["network.peer.address"] == "127.0.0.1"
    assert srv.status.status_code is StatusCode.UNSET

    [line] = lines.entries("request")
    assert line["code"] == "OK"
    assert line["method"] == f"/{SERVICE}/Unary"
    assert line["peer"].startswith("ipv4:127.0.0.1:")
    assert len(line["request_id"]) == 16
    assert isinstance(line["duration_ms"], float)
    assert line["trace_id"] == format(srv.context.trace_id, "032x")
    # The trace is sampled, so the handler's info entry is written, not buffered.
    assert [e["value"] for e in lines.entries("handling")] == ["hi"]

    expected = {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": "Unary"}
    assert telemetry.points("rpc.server.duration") == [({**expected, "rpc.grpc.status_code": 0}, 1)]
    assert telemetry.points("rpc.client.duration") == [({**expected, "rpc.grpc.status_code": 0}, 1)]


async def test_aio_abort_flushes_buffer_and_records_code(lines: Lines) -> None:
    telemetry = Telemetry(sampled=False)
    # NOT_FOUND is the caller's fault, no error by default: a rule counting every non-OK code
    server = await start_aio(telemetry, is_error=lambda code: code is not grpc.StatusCode.OK)
    try:
        async with server.channel() as channel:
            assert (await stub(channel, "Unary")(S(value="fine"))).value == "fine"
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub(channel, "Unary")(S(value="abort:NOT_FOUND"))
    finally:
        await server.server.stop(None)
    assert failure.value.code() is grpc.StatusCode.NOT_FOUND

    # Unsampled: the successful request's entry was dropped, the failed one's flushed.
    assert [e["value"] for e in lines.entries("handling")] == ["abort:NOT_FOUND"]
    assert [e["code"] for e in lines.entries("request")] == ["OK", "NOT_FOUND"]
    [failed] = lines.entries("grpc call failed")
    assert failed["level"] == "warn"
    assert (failed["code"], failed["details"]) == ("NOT_FOUND", "aborted on purpose")
    codes = sorted(p[0]["rpc.grpc.status_code"] for p in telemetry.points("rpc.server.duration"))
    assert codes == [0, 5]


@WIRINGS
async def test_aio_raise_is_unknown_with_error_span_and_log(lines: Lines, wiring: str) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry, wiring)
    try:
        async with server.channel() as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub(channel, "Unary")(S(value="raise"))
    finally:
        await server.server.stop(None)
    assert failure.value.code() is grpc.StatusCode.UNKNOWN

    [srv] = server_spans(telemetry)
    assert srv.status.status_code is StatusCode.ERROR
    assert srv.attributes and srv.attributes["rpc.grpc.status_code"] == 2
    assert [e.name for e in srv.events] == ["exception"]
    [error] = lines.entries("unhandled exception")
    assert error["level"] == "error"
    assert "ValueError" in json.dumps(error)
    # grpc's own report of the same exception is not written a second time
    assert [e["msg"] for e in lines.entries() if "traceback" in e] == ["unhandled exception"]
    assert lines.entries("request")[0]["code"] == "UNKNOWN"
    [client] = [s for s in telemetry.finished() if s.kind is SpanKind.CLIENT]
    assert client.status.status_code is StatusCode.ERROR


async def test_aio_server_error_codes_mark_span_error_only_when_server_fault(lines: Lines) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry)
    try:
        async with server.channel() as channel:
            for code in ("INVALID_ARGUMENT", "UNAVAILABLE"):
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub(channel, "Unary")(S(value=f"abort:{code}"))
    finally:
        await server.server.stop(None)
    statuses = {s.attributes["rpc.grpc.status_code"]: s.status for s in server_spans(telemetry)}  # type: ignore[index]
    assert statuses[3].status_code is StatusCode.UNSET
    assert statuses[14].status_code is StatusCode.ERROR
    assert statuses[14].description == "aborted on purpose"


async def test_request_id_is_reused_from_metadata(lines: Lines) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry)
    try:
        async with server.channel() as channel:
            await stub(channel, "Unary")(S(value="x"), metadata=(("x-request-id", "req-42"),))
    finally:
        await server.server.stop(None)
    assert lines.entries("request")[0]["request_id"] == "req-42"


async def test_a_long_or_odd_request_id_in_metadata_is_replaced(lines: Lines) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry)
    try:
        async with server.channel() as channel:
            for caller in ("r" * 5000, "a b", "<b>"):
                await stub(channel, "Unary")(S(value="x"), metadata=(("x-request-id", caller),))
    finally:
        await server.server.stop(None)
    ids = [entry["request_id"] for entry in lines.entries("request")]
    assert len(ids) == 3 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


@WIRINGS
async def test_health_calls_are_quiet_and_request_line_switchable(
    lines: Lines, wiring: str
) -> None:
    telemetry = Telemetry()
    quiet = await start_aio(telemetry, wiring, log_requests=False)
    loud = await start_aio(telemetry, wiring)
    try:
        for server in (quiet, loud):
            async with server.channel() as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                answer = await check(health_pb2.HealthCheckRequest())
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
                await stub(channel, "Unary")(S(value="x"))
    finally:
        await quiet.server.stop(None)
        await loud.server.stop(None)
    # Only the loud server's echo call is logged; health checks are still traced.
    assert [e["method"] for e in lines.entries("request")] == [f"/{SERVICE}/Unary"]
    assert len(server_spans(telemetry)) == 4


async def test_debug_payloads_are_json_masked_and_truncated(lines: Lines) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry)
    secret, long = Struct(), Struct()
    secret.update({"user": "ana", "password": "hunter2"})
    long.update({"note": "x" * 3000})
    try:
        async with server.channel() as channel:
            await stub(channel, "Struct", msg=Struct)(secret)
            assert lines.entries("request payload") == []
            log.set_debug(True)
            await stub(channel, "Struct", msg=Struct)(secret)
            await stub(channel, "Struct", msg=Struct)(long)
    finally:
        await server.server.stop(None)
    sent, sent_long = lines.entries("request payload")
    back, back_long = lines.entries("response payload")
    assert sent["level"] == "debug" and sent["method"] == f"/{SERVICE}/Struct"
    for entry in (sent, back):
        assert json.loads(entry["payload"]) == {"user": "ana", "password": "[REDACTED]"}
    for entry in (sent_long, back_long):
        assert entry["payload"].startswith('{"note":"xxx')
        assert "truncated" in entry["payload"]
        assert len(entry["payload"]) < 1100


@WIRINGS
async def test_aio_streaming_rpcs(lines: Lines, wiring: str) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry, wiring)

    async def numbers() -> AsyncIterator[StringValue]:
        for v in ("a", "b"):
            yield S(value=v)

    try:
        async with server.channel() as channel:
            got = [
                r.value async for r in stub(channel, "ServerStream", "unary_stream")(S(value="s"))
            ]
            assert got == ["s-0", "s-1", "s-2"]
            assert (await stub(channel, "ClientStream", "stream_unary")(numbers())).value == "a+b"
            got = [r.value async for r in stub(channel, "Bidi", "stream_stream")(numbers())]
            assert got == ["A", "B"]
            call = stub(channel, "ServerStream", "unary_stream")(S(value="abort"))
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                _ = [r async for r in call]
            assert failure.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        await asyncio.sleep(0.1)  # the client side records streams when they complete
    finally:
        await server.server.stop(None)
    codes = {(e["method"].rsplit("/", 1)[1], e["code"]) for e in lines.entries("request")}
    assert codes == {
        ("ServerStream", "OK"),
        ("ClientStream", "OK"),
        ("Bidi", "OK"),
        ("ServerStream", "RESOURCE_EXHAUSTED"),
    }
    server_codes = sorted(
        p[0]["rpc.grpc.status_code"] for p in telemetry.points("rpc.server.duration")
    )
    client_codes = sorted(
        p[0]["rpc.grpc.status_code"] for p in telemetry.points("rpc.client.duration")
    )
    assert server_codes == client_codes == [0, 0, 0, 8]  # a point per (method, code)
    assert len(server_spans(telemetry)) == 4


@WIRINGS
async def test_unknown_method_is_unimplemented(lines: Lines, wiring: str) -> None:
    telemetry = Telemetry()
    server = await start_aio(telemetry, wiring)
    try:
        async with server.channel() as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub(channel, "Nope")(S(value="x"))
    finally:
        await server.server.stop(None)
    assert failure.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert lines.entries("grpc call failed")[0]["code"] == "UNIMPLEMENTED"


class Recording:
    """A layer that records its calls in ``journal`` and can be told to fail."""

    def __init__(self, name: str, journal: list[str], fail: str = "") -> None:
        self.name, self.journal, self.fail = name, journal, fail

    def enter(self, info: Any, context: Any, metadata: Any, request: Any) -> str:
        self.journal.append(f"enter {self.name}")
        if self.fail == "enter":
            raise RuntimeError(f"{self.name} cannot enter")
        return self.name

    def exit(
        self, state: str, context: Any, code: Any, response: Any, exc: BaseException | None
    ) -> None:
        outcome = "ok" if exc is None else type(exc).__name__
        self.journal.append(f"exit {state} {outcome}")
        if self.fail == "exit":
            raise RuntimeError(f"{self.name} cannot exit")


@pytest.mark.parametrize("fail", ["", "enter", "exit"])
async def test_layers_run_in_order_and_a_failing_layer_unwinds_the_others(fail: str) -> None:
    from clue.grpc._server import AsyncServerInterceptor

    journal: list[str] = []
    layers = [Recording("a", journal), Recording("b", journal, fail), Recording("c", journal)]
    server = grpc.aio.server(interceptors=[AsyncServerInterceptor(*layers)])
    server.add_generic_rpc_handlers([echo_handlers(aio=True)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = stub(channel, "Unary")(S(value="x"))
            if fail:
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await call
                assert failure.value.code() is grpc.StatusCode.UNKNOWN
            else:
                assert (await call).value == "x"
    finally:
        await server.stop(None)
    if fail == "enter":  # a (already entered) is exited with b's error; c never entered
        assert journal == ["enter a", "enter b", "exit a RuntimeError"]
    elif fail == "exit":  # every layer still exits; the call fails with b's error
        assert journal == ["enter a", "enter b", "enter c", "exit c ok", "exit b ok", "exit a ok"]
    else:
        assert journal == ["enter a", "enter b", "enter c", "exit c ok", "exit b ok", "exit a ok"]


async def test_insecure_channel_aio_wires_the_client_interceptors(lines: Lines) -> None:
    server = await start_aio(Telemetry())
    try:
        async with clue.grpc.async_insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert (await stub(channel, "Unary")(S(value="one line"))).value == "one line"
    finally:
        await server.server.stop(None)
    [call] = lines.entries("grpc call")
    assert (call["method"], call["code"]) == (f"/{SERVICE}/Unary", "OK")


# --- sync server and client ----------------------------------------------------------------


class SyncServer:
    def __init__(self, telemetry: Telemetry, wiring: str = "interceptors", **options: Any) -> None:
        self.pool = futures.ThreadPoolExecutor(max_workers=4)
        if wiring == "interceptors":
            self.server = grpc.server(
                self.pool,
                interceptors=clue.grpc.server_interceptors(**telemetry.providers(), **options),
            )
        else:
            self.server = clue.grpc.instrument(
                grpc.server(self.pool), **telemetry.providers(), **options
            )
        self.server.add_generic_rpc_handlers([echo_handlers(aio=False)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.telemetry = telemetry

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        interceptors = clue.grpc.client_interceptors(**self.telemetry.providers())
        return grpc.intercept_channel(channel, *interceptors)

    def stop(self) -> None:
        self.server.stop(None).wait()
        self.pool.shutdown()


@WIRINGS
def test_sync_server_and_client(lines: Lines, wiring: str) -> None:
    telemetry = Telemetry(sampled=False)
    server = SyncServer(telemetry, wiring)
    try:
        with server.channel() as channel:
            assert stub(channel, "Unary")(S(value="ok")).value == "ok"
            for value, code in (("abort:PERMISSION_DENIED", 7), ("raise", 2)):
                with pytest.raises(grpc.RpcError) as failure:
                    stub(channel, "Unary")(S(value=value))
                assert failure.value.code().value[0] == code
            got = [r.value for r in stub(channel, "ServerStream", "unary_stream")(S(value="s"))]
            assert got == ["s-0", "s-1", "s-2"]
    finally:
        server.stop()
    assert [e["code"] for e in lines.entries("request")] == [
        "OK",
        "PERMISSION_DENIED",
        "UNKNOWN",
        "OK",
    ]
    # Buffered entries: dropped for the good call and the caller's fault (PERMISSION_DENIED),
    # flushed for the server's (UNKNOWN).
    assert [e["value"] for e in lines.entries("handling")] == ["raise"]
    assert len(lines.entries("unhandled exception")) == 1
    server_codes = sorted(
        p[0]["rpc.grpc.status_code"] for p in telemetry.points("rpc.server.duration")
    )
    client_codes = sorted(
        p[0]["rpc.grpc.status_code"] for p in telemetry.points("rpc.client.duration")
    )
    assert server_codes == client_codes == [0, 0, 2, 7]


def test_sync_trace_propagates_from_client_to_server(lines: Lines) -> None:
    telemetry = Telemetry()
    server = SyncServer(telemetry)
    try:
        with server.channel() as channel:
            stub(channel, "Unary")(S(value="ok"))
    finally:
        server.stop()
    spans = {s.kind: s for s in telemetry.finished()}
    srv, cli = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert srv.parent is not None and srv.parent.span_id == cli.context.span_id
    assert lines.entries("request")[0]["trace_id"] == format(srv.context.trace_id, "032x")


def test_insecure_channel_sync(lines: Lines) -> None:
    server = SyncServer(Telemetry())
    try:
        with clue.grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert stub(channel, "Unary")(S(value="sync")).value == "sync"
            with pytest.raises(grpc.RpcError):
                stub(channel, "Unary")(S(value="abort:ALREADY_EXISTS"))
    finally:
        server.stop()
    assert [e["code"] for e in lines.entries("grpc call")] == ["OK"]
    assert [e["code"] for e in lines.entries("grpc call failed")] == ["ALREADY_EXISTS"]


async def test_aio_servers_run_plain_function_handlers_through_the_layers(lines: Lines) -> None:
    """grpc.aio also runs plain functions, and functions returning an awaitable."""

    async def later(value: str) -> StringValue:
        return S(value=value)

    ser = {"request_deserializer": S.FromString, "response_serializer": S.SerializeToString}
    methods = {
        "Plain": grpc.unary_unary_rpc_method_handler(lambda r, c: S(value=r.value * 2), **ser),
        "Deferred": grpc.unary_unary_rpc_method_handler(lambda r, c: later(r.value[::-1]), **ser),
    }
    telemetry = Telemetry()
    server = grpc.aio.server(
        interceptors=clue.grpc.async_server_interceptors(**telemetry.providers())
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, methods)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert (await stub(channel, "Plain")(S(value="ab"))).value == "abab"
            assert (await stub(channel, "Deferred")(S(value="ab"))).value == "ba"
    finally:
        await server.stop(None)
    assert sorted(line["method"] for line in lines.entries("request")) == [
        f"/{SERVICE}/Deferred",
        f"/{SERVICE}/Plain",
    ]
    assert {s.name for s in server_spans(telemetry)} == {f"{SERVICE}/Plain", f"{SERVICE}/Deferred"}
