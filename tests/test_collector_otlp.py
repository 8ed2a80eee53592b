"""OTLP answers of the collector over gRPC and HTTP: success, partial success,
malformed and oversized payloads; retention; forwarding. The collector runs as
a real subprocess."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.test_collector_support import CollectorProcess, wait_for

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LIMIT = 64 * 1024


def spans_request(
    count: int,
    service: str = "otlp-test",
    *,
    trace_id: bytes | None = None,
    start_ns: int | None = None,
    bad: int = 0,
    padding: int = 0,
) -> ExportTraceServiceRequest:
    """*count* valid spans of one trace, plus *bad* spans with a 4-byte trace id."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
    scope = rs.scope_spans.add()
    tid = trace_id or os.urandom(16)
    start = start_ns or time.time_ns()
    for i in range(count):
        span = scope.spans.add(
            trace_id=tid,
            span_id=os.urandom(8),
            name=f"op-{i}",
            start_time_unix_nano=start + i,
            end_time_unix_nano=start + i + 1000,
        )
        if padding:
            span.attributes.add(key="pad", value=AnyValue(string_value="x" * padding))
    for _ in range(bad):
        scope.spans.add(trace_id=b"\x01\x02\x03\x04", span_id=os.urandom(8), name="bad")
    return request


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    c = CollectorProcess("--max-request-size", "64KiB")
    try:
        yield c
    finally:
        assert c.stop() == 0


@pytest.fixture(scope="module")
def channel(collector: CollectorProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(collector.grpc_endpoint) as ch:
        yield ch


def export(channel: grpc.Channel, method: str, body: bytes) -> bytes:
    call = channel.unary_unary(method, None, None)
    result: bytes = call(body, timeout=10)
    return result


def stored_spans(collector: CollectorProcess) -> int:
    return int(collector.api("/api/status")["stored"]["traces"])


def test_grpc_success_is_an_empty_response(
    collector: CollectorProcess, channel: grpc.Channel
) -> None:
    tid = os.urandom(16)
    answer = ExportTraceServiceResponse.FromString(
        export(channel, TRACES, spans_request(3, trace_id=tid).SerializeToString())
    )
    assert not answer.HasField("partial_success")
    assert collector.api(f"/api/traces/{tid.hex()}")["span_count"] == 3


def test_grpc_partial_success_counts_rejected_spans(
    collector: CollectorProcess, channel: grpc.Channel
) -> None:
    tid = os.urandom(16)
    raw = export(channel, TRACES, spans_request(2, trace_id=tid, bad=3).SerializeToString())
    answer = ExportTraceServiceResponse.FromString(raw)
    assert answer.partial_success.rejected_spans == 3
    assert "trace_id" in answer.partial_success.error_message
    assert collector.api(f"/api/traces/{tid.hex()}")["span_count"] == 2


def test_grpc_partial_success_for_logs_and_metrics(channel: grpc.Channel) -> None:
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    records.add(body=AnyValue(string_value="fine"), trace_id=os.urandom(16), span_id=os.urandom(8))
    records.add(body=AnyValue(string_value="broken"), trace_id=b"\x01\x02")
    answer = ExportLogsServiceResponse.FromString(export(channel, LOGS, logs.SerializeToString()))
    assert answer.partial_success.rejected_log_records == 1
    metrics = ExportMetricsServiceRequest()
    scope = metrics.resource_metrics.add().scope_metrics.add()
    scope.metrics.add(name="no.data")
    gauge = scope.metrics.add(name="a.gauge")
    gauge.gauge.data_points.add(as_double=1.5, time_unix_nano=time.time_ns())
    raw = export(channel, METRICS, metrics.SerializeToString())
    assert ExportMetricsServiceResponse.FromString(raw).partial_success.rejected_data_points == 1


def test_grpc_malformed_is_invalid_argument_and_loses_nothing(
    collector: CollectorProcess, channel: grpc.Channel
) -> None:
    before = stored_spans(collector)
    for method in (TRACES, LOGS, METRICS):
        with pytest.raises(grpc.RpcError) as failure:
            export(channel, method, b"\xff\xff\xff not protobuf")
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed OTLP protobuf" in (failure.value.details() or "")
    assert stored_spans(collector) == before
    export(channel, TRACES, spans_request(1).SerializeToString())
    assert stored_spans(collector) == before + 1


def test_grpc_oversized_is_resource_exhausted(
    collector: CollectorProcess, channel: grpc.Channel
) -> None:
    big = spans_request(40, padding=2048).SerializeToString()
    assert len(big) > LIMIT
    before = stored_spans(collector)
    with pytest.raises(grpc.RpcError) as failure:
        export(channel, TRACES, big)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored_spans(collector) == before


def post(
    collector: CollectorProcess, signal: str, body: bytes, content_type: str, **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{collector.http_endpoint}/v1/{signal}",
        content=body,
        headers={"content-type": content_type, **headers},
        timeout=10,
    )


def test_http_protobuf_and_gzip(collector: CollectorProcess) -> None:
    tid = os.urandom(16)
    body = spans_request(2, trace_id=tid, bad=1).SerializeToString()
    plain = post(collector, "traces", body, "application/x-protobuf")
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(plain.content)
    assert answer.partial_success.rejected_spans == 1
    tid2 = os.urandom(16)
    packed = gzip.compress(spans_request(4, trace_id=tid2).SerializeToString())
    zipped = post(
        collector, "traces", packed, "application/x-protobuf", **{"content-encoding": "gzip"}
    )
    assert zipped.status_code == 200
    assert collector.api(f"/api/traces/{tid.hex()}")["span_count"] == 2
    assert collector.api(f"/api/traces/{tid2.hex()}")["span_count"] == 4


def test_http_json_uses_hex_ids_and_camel_case(collector: CollectorProcess) -> None:
    tid, sid, child = os.urandom(16).hex(), os.urandom(8).hex(), os.urandom(8).hex()
    now = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": tid,
                                "spanId": sid,
                                "name": "parent",
                                "kind": 2,
                                "startTimeUnixNano": str(now),
                                "endTimeUnixNano": str(now + 5_000_000),
                                "attributes": [{"key": "n", "value": {"intValue": "7"}}],
                                "status": {"code": 2, "message": "boom"},
                            },
                            {
                                "traceId": tid,
                                "spanId": child,
                                "parentSpanId": sid,
                                "name": "child",
                                "startTimeUnixNano": str(now + 1000),
                                "endTimeUnixNano": str(now + 2000),
                            },
                            {"traceId": "", "spanId": os.urandom(8).hex(), "name": "no trace id"},
                        ],
                    }
                ],
            }
        ]
    }
    response = post(collector, "traces", json.dumps(body).encode(), "application/json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": response.json()["partialSuccess"]["errorMessage"],
        }
    }
    trace = collector.api(f"/api/traces/{tid}")
    parent, kid = trace["spans"]
    assert (parent["span_id"], parent["name"], parent["kind"]) == (sid, "parent", "server")
    assert parent["attributes"] == {"n": 7} and parent["status"]["code"] == "error"
    assert (kid["parent_id"], kid["depth"]) == (sid, 1)
    ok = post(collector, "logs", b'{"resourceLogs": []}', "application/json; charset=utf-8")
    assert ok.status_code == 200 and ok.json() == {}


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"\xff\xffnot protobuf", "application/x-protobuf", "malformed OTLP protobuf"),
        (b"{not json", "application/json", "malformed OTLP JSON"),
        (b"[1, 2]", "application/json", "must be an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            "not hexadecimal",
        ),
        (b'{"resourceSpans": "nope"}', "application/json", "malformed OTLP JSON"),
    ],
)
def test_http_malformed_is_400_with_a_status(
    collector: CollectorProcess, body: bytes, content_type: str, reason: str
) -> None:
    before = stored_spans(collector)
    response = post(collector, "traces", body, content_type)
    assert response.status_code == 400
    if content_type == "application/json":
        assert reason in response.json()["message"] and response.json()["code"] == 3
    else:
        status = Status.FromString(response.content)
        assert status.code == 3 and reason in status.message
    assert stored_spans(collector) == before


def test_http_oversized_is_413(collector: CollectorProcess) -> None:
    big = spans_request(40, padding=2048).SerializeToString()
    response = post(collector, "traces", big, "application/x-protobuf")
    assert response.status_code == 413
    assert "limit" in Status.FromString(response.content).message
    bomb = gzip.compress(b"\x00" * (LIMIT * 8))
    assert len(bomb) < LIMIT
    inflated = post(
        collector, "metrics", bomb, "application/x-protobuf", **{"content-encoding": "gzip"}
    )
    assert inflated.status_code == 413


def test_http_other_media_methods_and_encodings(collector: CollectorProcess) -> None:
    assert post(collector, "traces", b"x", "text/plain").status_code == 415
    assert (
        post(
            collector, "logs", b"", "application/x-protobuf", **{"content-encoding": "br"}
        ).status_code
        == 415
    )
    assert (
        post(
            collector, "logs", b"not gzip", "application/x-protobuf", **{"content-encoding": "gzip"}
        ).status_code
        == 400
    )
    assert httpx.get(f"{collector.http_endpoint}/v1/traces").status_code == 405
    assert httpx.post(f"{collector.http_endpoint}/v1/profiles").status_code == 404


def test_retention_evicts_oldest_by_count_and_age() -> None:
    c = CollectorProcess("--max-spans", "50", "--max-logs", "5", "--max-age", "3s")
    try:
        with grpc.insecure_channel(c.grpc_endpoint) as ch:
            first, second, third, fourth = (os.urandom(16) for _ in range(4))
            for tid in (first, second, third, fourth):
                export(ch, TRACES, spans_request(20, trace_id=tid).SerializeToString())
            assert c.api("/api/status")["stored"]["traces"] == 50
            assert httpx.get(f"{c.ui}/api/traces/{first.hex()}").status_code == 404
            assert c.api(f"/api/traces/{second.hex()}")["span_count"] == 10
            survivors = c.api(f"/api/traces/{second.hex()}")["spans"]
            assert sorted(s["name"] for s in survivors) == [f"op-{i}" for i in range(10, 20)]
            assert c.api(f"/api/traces/{third.hex()}")["span_count"] == 20
            logs = ExportLogsServiceRequest()
            records = logs.resource_logs.add().scope_logs.add().log_records
            for i in range(8):
                records.add(time_unix_nano=time.time_ns(), body=AnyValue(string_value=f"log {i}"))
            export(ch, LOGS, logs.SerializeToString())
            kept = [entry["body"] for entry in c.api("/api/logs")["logs"]]
            assert kept == ["log 7", "log 6", "log 5", "log 4", "log 3"]
            old = os.urandom(16)
            export(
                ch,
                TRACES,
                spans_request(
                    5, trace_id=old, start_ns=time.time_ns() - 60 * 10**9
                ).SerializeToString(),
            )
            gone = wait_for(
                lambda: httpx.get(f"{c.ui}/api/traces/{old.hex()}").status_code == 404, 5
            )
            assert gone
            assert c.api(f"/api/traces/{third.hex()}")["span_count"] == 20
            assert wait_for(lambda: c.api("/api/status")["stored"]["traces"] == 0, 8)
    finally:
        assert c.stop() == 0


def test_forward_passes_everything_on() -> None:
    downstream = CollectorProcess()
    try:
        front = CollectorProcess("--forward", downstream.grpc_endpoint)
        try:
            tid = os.urandom(16)
            body = spans_request(3, trace_id=tid).SerializeToString()
            assert post(front, "traces", body, "application/x-protobuf").status_code == 200
            with grpc.insecure_channel(front.grpc_endpoint) as ch:
                export(
                    ch, TRACES, spans_request(2, trace_id=tid, service="other").SerializeToString()
                )
            assert front.api(f"/api/traces/{tid.hex()}")["span_count"] == 5
            arrived = wait_for(
                lambda: (
                    httpx.get(f"{downstream.ui}/api/traces/{tid.hex()}").json().get("span_count")
                    == 5
                )
            )
            assert arrived
            assert front.api("/api/status")["forward"]["sent"] == 2
        finally:
            assert front.stop() == 0
    finally:
        assert downstream.stop() == 0


def test_a_stuck_forward_target_drops_oldest_and_never_blocks_ingest() -> None:
    with socket.socket() as silent:  # accepts connections, never speaks HTTP/2
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        front = CollectorProcess("--forward", target, "--forward-queue", "2")
        try:
            with grpc.insecure_channel(front.grpc_endpoint) as ch:
                for _ in range(10):
                    export(ch, TRACES, spans_request(1).SerializeToString())
            status = front.api("/api/status")
            assert status["stored"]["traces"] == 10
            forward = status["forward"]
            assert forward["target"] == target and forward["sent"] == 0
            assert forward["pending"] + forward["dropped"] + 1 >= 10 > forward["pending"]
            assert forward["dropped"] >= 7
        finally:
            assert front.stop() == 0
