"""Unit tests of the collector's pure parts: OTLP flattening of every metric kind,
series maths, parameter and flag parsing, the store's retention."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.datastructures import QueryParams

from clue.collector import otlp, queries, series
from clue.collector.config import Config, config_from_args, parse_duration_ns, parse_size
from clue.collector.params import BadParameter, Params
from clue.collector.store import Store

NOW = time.time_ns()


def metrics_request() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=AnyValue(string_value="unit"))
    scope = rm.scope_metrics.add()
    counter = scope.metrics.add(name="c", unit="1")
    counter.sum.is_monotonic, counter.sum.aggregation_temporality = True, 2
    for i, value in enumerate([10, 20, 40, 5, 15]):  # a reset after 40
        counter.sum.data_points.add(
            start_time_unix_nano=NOW, time_unix_nano=NOW + (i + 1) * 10**9, as_int=value
        )
    delta = scope.metrics.add(name="d", unit="By")
    delta.sum.is_monotonic, delta.sum.aggregation_temporality = True, 1
    delta.sum.data_points.add(
        start_time_unix_nano=NOW, time_unix_nano=NOW + 2 * 10**9, as_double=8.0
    )
    exp = scope.metrics.add(name="e", unit="s")
    point = exp.exponential_histogram.data_points.add(
        time_unix_nano=NOW + 10**9, scale=0, zero_count=0, count=4
    )
    point.positive.offset = 1  # buckets (2, 4], (4, 8]
    point.positive.bucket_counts.extend([2, 2])
    summary = scope.metrics.add(name="s", unit="ms")
    sp = summary.summary.data_points.add(time_unix_nano=NOW + 10**9, count=10, sum=50)
    sp.quantile_values.add(quantile=0.5, value=4.0)
    sp.quantile_values.add(quantile=0.99, value=9.0)
    gauge = scope.metrics.add(name="g")
    gauge.gauge.data_points.add(time_unix_nano=NOW + 10**9, as_double=float("nan"))
    return request


@pytest.fixture
def store() -> Store:
    s = Store()
    s.add("metrics", otlp.decode("metrics", metrics_request()))
    return s


def test_counter_rates_skip_resets_and_delta_uses_its_interval(store: Store) -> None:
    rates = series.series(store, "c")
    assert rates is not None and rates["unit"] == "1/s"
    assert [v for _, v in rates["series"][0]["points"]] == [10.0, 20.0, 10.0]
    delta = series.series(store, "d")
    assert delta is not None and delta["series"][0]["points"] == [[NOW + 2 * 10**9, 4.0]]


def test_exponential_histogram_and_summary_percentiles(store: Store) -> None:
    exp = series.series(store, "e")
    assert exp is not None and exp["shown_as"] == "percentiles"
    by_q = {s["labels"]["quantile"]: s["points"][0][1] for s in exp["series"]}
    assert by_q[0.5] == pytest.approx(4.0) and 4.0 < by_q[0.9] <= 8.0
    summary = series.series(store, "s")
    assert summary is not None
    assert {s["labels"]["quantile"]: s["points"][0][1] for s in summary["series"]} == {
        0.5: 4.0,
        0.99: 9.0,
    }


def test_a_name_reused_with_another_kind_is_left_out_of_the_chart(store: Store) -> None:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=AnyValue(string_value="other"))
    gauge = rm.scope_metrics.add().metrics.add(name="e")
    gauge.gauge.data_points.add(time_unix_nano=NOW + 5 * 10**9, as_double=3.0)
    store.add("metrics", otlp.decode("metrics", request))
    mixed = series.series(store, "e")
    assert mixed is not None and mixed["shown_as"] == "percentiles"
    assert {s["labels"]["service.name"] for s in mixed["series"]} == {"unit"}
    alone = series.series(store, "e", service="other")
    assert alone is not None and alone["series"][0]["points"] == [[NOW + 5 * 10**9, 3.0]]


def test_non_finite_gauge_is_kept_as_text(store: Store) -> None:
    listed = {m["name"]: m for m in series.metric_list(store)}
    assert listed["g"]["shown_as"] == "value" and listed["c"]["shown_as"] == "rate"
    assert series.series(store, "nope") is None
    gauge = series.series(store, "g")
    assert gauge is not None and gauge["series"][0]["points"] == []


def test_quantile_interpolates_inside_buckets() -> None:
    assert series.quantile([10, 20], [0, 10, 0], 0.5) == pytest.approx(15.0)
    assert series.quantile([10, 20], [10, 0, 0], 0.5) == pytest.approx(5.0)
    assert series.quantile([10, 20], [0, 0, 5], 0.99) == 20.0


def test_long_series_are_thinned_keeping_the_last_point() -> None:
    points = [[float(i), float(i)] for i in range(1001)]
    kept = series.thin(points, 100)
    assert 50 <= len(kept) <= 101 and kept[0] == [0.0, 0.0] and kept[-1] == [1000.0, 1000.0]
    assert series.thin(points[:50], 100) == points[:50]


def test_severity_names() -> None:
    assert [queries.severity_name(n) for n in (0, 1, 9, 10, 17, 24)] == [
        "UNSPECIFIED",
        "TRACE",
        "INFO",
        "INFO2",
        "ERROR",
        "FATAL4",
    ]


def test_params_validation() -> None:
    p = Params(
        QueryParams("limit=5&errors=yes&attr=a=b&attr=c%3D&min_duration=1.5&severity=warn"),
        {"limit", "errors", "attr", "min_duration", "severity"},
    )
    assert p.integer("limit", 20, 1, 10) == 5 and p.flag("errors") is True
    assert p.attributes("attr") == [("a", "b"), ("c", "")]
    assert p.duration_ns("min_duration") == 1_500_000 and p.severity("severity") == 13
    with pytest.raises(BadParameter, match="x is an unknown parameter"):
        Params(QueryParams("x=1"), {"limit"})
    start, end = Params(QueryParams("lookback=1m&end=100"), {"lookback", "end"}).time_range()
    assert (start, end) == (40 * 10**9, 100 * 10**9)
    with pytest.raises(BadParameter, match="lookback cannot be given with start"):
        Params(QueryParams("lookback=1m&start=1"), {"lookback", "start"}).time_range()


def test_config_parsing_and_bad_flags() -> None:
    assert parse_duration_ns("2h") == 7_200 * 10**9 and parse_size("4MiB") == 4 << 20
    config = config_from_args(
        ["--grpc-port", "0", "--max-age", "30m", "--max-request-size", "1MiB"]
    )
    assert config.grpc_port == 0 and config.max_age_ns == 1_800 * 10**9
    assert config.max_request_bytes == 1 << 20
    with pytest.raises(ValueError, match="max_spans must be positive"):
        Config(max_spans=0)
    done = subprocess.run(
        [sys.executable, "-m", "clue.collector", "--max-age", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--max-age: 'soon' is not a duration" in done.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-age", "99999999999999999999d", "is longer than 36500d"),
        ("--max-request-size", "4GiB", "above gRPC's largest message"),
        ("--grpc-port", "\u0661", "is not a port"),
        ("--max-spans", "9" * 5000, "is not an integer below 10**18"),
    ],
)
def test_out_of_range_flags_stop_start_up_naming_the_flag(
    flag: str, value: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clue.collector", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and f"{flag}: " in done.stderr and message in done.stderr
    assert len(done.stderr) < 2000
    with pytest.raises(ValueError, match="max_request_bytes must be at most"):
        Config(max_request_bytes=2**31)


def test_store_rolls_back_a_failing_batch_and_keeps_what_it_had() -> None:
    s = Store(max_spans=10)
    good = otlp.Decoded(
        rows=[
            ("a" * 32, f"{i:016x}", "", "svc", "op", 1, NOW, 5, 0, "", "{}", "[]", "[]", "", "r")
            for i in range(3)
        ],
        resources={"r": ("svc", "{}")},
    )
    s.add("traces", good)
    bad = otlp.Decoded(
        rows=[
            ("b" * 32, "1" * 16, "", "svc", "op", 1, NOW, 5, 0, "", "{}", "[]", "[]", "", "r"),
            ("b" * 32, "2" * 16, "", "svc", "op"),
        ],
        resources={"r": ("svc", "{}")},
    )
    with pytest.raises(Exception, match="bindings"):
        s.add("traces", bad)
    assert s.counts()["traces"] == 3
    assert len(s.query("SELECT * FROM spans")) == 3
    s.add("traces", good)  # the same spans again are stored once
    assert s.counts()["traces"] == 3


def test_store_file_survives_a_restart(tmp_path: object) -> None:
    path = f"{tmp_path}/collector.db"
    first = Store(path)
    first.add("metrics", otlp.decode("metrics", metrics_request()))
    stored = first.counts()["metrics"]
    first.close()
    again = Store(path)
    assert again.counts()["metrics"] == stored > 0
    assert again.evict_old(NOW + 10**18) == stored and again.counts()["metrics"] == 0


def test_a_taken_port_stops_start_up_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "clue.collector",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                "--ui-port",
                port,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


@settings(max_examples=300, deadline=None)
@given(
    signal=st.sampled_from(["traces", "metrics", "logs"]),
    body=st.binary(max_size=300),
    as_json=st.booleans(),
)
def test_any_payload_is_parsed_or_refused_cleanly(signal: str, body: bytes, as_json: bool) -> None:
    try:
        message = otlp.parse(signal, body, json_encoded=as_json)
    except otlp.MalformedRequest:
        return
    decoded = otlp.decode(signal, message)
    Store().add(signal, decoded)


@settings(max_examples=300, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_a_damaged_request_is_stored_or_refused_never_crashes(flips: list[tuple[int, int]]) -> None:
    body = bytearray(metrics_request().SerializeToString())
    for position, value in flips:
        body[position % len(body)] = value
    try:
        message = otlp.parse("metrics", bytes(body))
    except otlp.MalformedRequest:
        return
    store = Store()
    store.add("metrics", otlp.decode("metrics", message))
    for metric in series.metric_list(store):
        series.series(store, metric["name"], service=metric["service"])


def test_timestamps_beyond_sqlite_integers_are_rejected_not_fatal() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        start_time_unix_nano=NOW,
        end_time_unix_nano=2**64 - 1,
    )
    spans.add(
        trace_id=b"\x01" * 16,
        span_id=b"\x03" * 8,
        start_time_unix_nano=NOW,
        end_time_unix_nano=NOW + 1,
    )
    decoded = otlp.decode("traces", request)
    assert (len(decoded.rows), decoded.rejected) == (1, 1) and "2**63" in decoded.error
    store = Store()
    store.add("traces", decoded)
    assert store.counts()["traces"] == 1


def spans_and_logs_bodies() -> dict[str, bytes]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    traces = ExportTraceServiceRequest()
    rs = traces.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="fuzz"))
    spans = rs.scope_spans.add().spans
    root = spans.add(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="root",
        start_time_unix_nano=NOW,
        end_time_unix_nano=NOW + 10,
    )
    root.attributes.add(key="n", value=AnyValue(int_value=3))
    root.attributes.add(key="list", value=AnyValue(array_value={"values": [{"bool_value": True}]}))
    root.events.add(time_unix_nano=NOW + 1, name="e")
    root.links.add(trace_id=b"\x05" * 16, span_id=b"\x06" * 8)
    spans.add(
        trace_id=b"\x01" * 16,
        span_id=b"\x03" * 8,
        parent_span_id=b"\x02" * 8,
        name="child",
        start_time_unix_nano=NOW + 2,
        end_time_unix_nano=NOW + 5,
    )
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    records.add(
        time_unix_nano=NOW,
        body=AnyValue(kvlist_value={"values": [{"key": "k"}]}),
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        severity_number=9,
    )
    return {"traces": traces.SerializeToString(), "logs": logs.SerializeToString()}


BODIES = spans_and_logs_bodies()


@settings(max_examples=300, deadline=None)
@given(
    signal=st.sampled_from(["traces", "logs"]),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_damaged_spans_and_logs_are_stored_or_refused(
    signal: str, flips: list[tuple[int, int]]
) -> None:
    body = bytearray(BODIES[signal])
    for position, value in flips:
        body[position % len(body)] = value
    try:
        message = otlp.parse(signal, bytes(body))
    except otlp.MalformedRequest:
        return
    store = Store()
    store.add(signal, otlp.decode(signal, message))
    for found in queries.search_traces(store, queries.TraceFilter()):
        queries.trace(store, found["trace_id"])
    queries.logs(store)
    queries.dependencies(store)


_KEYS = st.sampled_from(
    [
        "resourceSpans",
        "scopeSpans",
        "spans",
        "traceId",
        "spanId",
        "parentSpanId",
        "name",
        "attributes",
        "key",
        "value",
        "stringValue",
        "intValue",
        "kind",
        "startTimeUnixNano",
        "resource",
        "status",
        "code",
        "events",
        "resourceLogs",
        "scopeLogs",
        "logRecords",
        "body",
        "resourceMetrics",
        "scopeMetrics",
        "metrics",
        "gauge",
        "dataPoints",
        "asDouble",
    ]
)
_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["01" * 16, "02" * 8, "zz", "NaN", "SPAN_KIND_SERVER"]),
)
_TREE = st.recursive(
    _LEAF,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_KEYS, c, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(
    signal=st.sampled_from(["traces", "metrics", "logs"]),
    doc=st.dictionaries(_KEYS, _TREE, max_size=3),
)
def test_any_json_document_is_parsed_or_refused_cleanly(
    signal: str, doc: dict[str, object]
) -> None:
    body = json.dumps(doc).encode()
    try:
        message = otlp.parse(signal, body, json_encoded=True)
    except otlp.MalformedRequest:
        return
    Store().add(signal, otlp.decode(signal, message))
