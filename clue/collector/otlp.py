"""OTLP requests in, table rows out: parsing (protobuf and JSON) and flattening.

Rows are plain tuples in the column order of :mod:`clue.collector.store`, so a
batch goes to SQLite with one ``executemany``. Items with invalid ids are
rejected (counted, with a message) rather than failing the whole request, as
the OTLP partial-success rules ask.

Every name and text is bounded: longer ones keep their first characters and end
with a marker (``…[truncated 1048576 characters]``), except metric names, whose
points are rejected (a cut name could merge two metrics into one chart).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

REQUEST_TYPES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
Json = Any
LATEST = 2**63 - 1  # SQLite integers are signed 64-bit: later than the year 2262 is invalid
TIME_RANGE = "timestamps and counts must be below 2**63"
NAME_LIMIT = 255  # characters: span, service, scope, event names; attribute keys; units
VALUE_LIMIT = 4096  # an attribute value (arrays and maps as JSON), a status message
BODY_LIMIT = 65536  # a log record's body


class MalformedRequest(ValueError):
    """The payload is not a valid OTLP request of the expected type."""


@dataclass
class Decoded:
    """Rows of one request, the resources they refer to, and what was rejected."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    resources: dict[str, tuple[str, str]] = field(default_factory=dict)
    rejected: int = 0
    error: str = ""
    truncated: int = 0

    def reject(self, count: int, why: str) -> None:
        self.rejected += count
        self.error = self.error or why

    def cut(self, text: str, limit: int) -> str:
        """*text*, or its first *limit* characters and a marker saying how many were cut."""
        if len(text) <= limit:
            return text
        self.truncated += 1
        return f"{text[:limit]}…[truncated {len(text) - limit} characters]"

    def attributes(self, kvs: Any) -> dict[str, Json]:
        """A dict of an OTLP ``repeated KeyValue``, keys and values bounded."""
        out = {}
        for kv in kvs:
            key, v = kv.key, kv.value
            if len(key) > NAME_LIMIT:
                key = self.cut(key, NAME_LIMIT)
            if v.WhichOneof("value") == "string_value":  # the common case, kept short
                text = v.string_value
                out[key] = text if len(text) <= VALUE_LIMIT else self.cut(text, VALUE_LIMIT)
            else:
                out[key] = self.value(v, VALUE_LIMIT)
        return out

    def value(self, v: AnyValue, limit: int) -> Json:
        """:func:`value` of *v*; beyond *limit* characters (arrays and maps written as
        JSON) it becomes its truncated text."""
        plain = value(v)
        if isinstance(plain, (list, dict)):
            text = json.dumps(plain, separators=(",", ":"))
            return plain if len(text) <= limit else self.cut(text, limit)
        if isinstance(plain, str) and len(plain) > limit:
            return self.cut(plain, limit)
        return plain


def parse(signal: str, body: bytes, *, json_encoded: bool = False) -> Message:
    """Parse an export request of *signal* (traces, metrics, logs) from *body*."""
    message = REQUEST_TYPES[signal]()
    try:
        if json_encoded:
            tree = json.loads(body)
            if not isinstance(tree, dict):
                raise MalformedRequest("the JSON body must be an object")
            json_format.ParseDict(_ids_to_base64(tree), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except MalformedRequest:
        raise
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        kind = "JSON" if json_encoded else "protobuf"
        raise MalformedRequest(f"malformed OTLP {kind} {signal} request: {exc}") from None
    return message


def to_json(message: Message) -> bytes:
    """OTLP/JSON encoding of a response message (lowerCamelCase field names)."""
    return json_format.MessageToJson(message, indent=None).encode()


def _ids_to_base64(node: Json) -> Json:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping wants base64 for bytes."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise MalformedRequest(f"{key} {value!r} is not hexadecimal") from None
                out[key] = base64.b64encode(raw).decode()
            else:
                out[key] = _ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_ids_to_base64(item) for item in node]
    return node


def value(v: AnyValue) -> Json:
    """A plain JSON-able Python value for an OTLP ``AnyValue``."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        d = v.double_value
        return d if math.isfinite(d) else str(d)
    if kind == "bool_value":
        return v.bool_value
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _attributes_json(kvs: Any, decoded: Decoded) -> str:
    return _encode(decoded.attributes(kvs)) if kvs else "{}"


def _resource(resource: Resource, decoded: Decoded) -> tuple[str, str]:
    """(service name, resource key); registers the resource in *decoded*."""
    attrs = decoded.attributes(resource.attributes)
    text = json.dumps(attrs, separators=(",", ":"), sort_keys=True)
    key = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    named = [kv.value for kv in resource.attributes if kv.key == "service.name"]
    service = str((value(named[-1]) if named else None) or "unknown_service")
    decoded.resources[key] = (decoded.cut(service, NAME_LIMIT), text)
    return decoded.resources[key][0], key


def spans(request: ExportTraceServiceRequest) -> Decoded:
    """Rows for the ``spans`` table."""
    out = Decoded()
    rows = out.rows
    for rs in request.resource_spans:
        service, resource_key = _resource(rs.resource, out)
        for ss in rs.scope_spans:
            scope = out.cut(ss.scope.name, NAME_LIMIT)
            for s in ss.spans:
                tid, sid, parent = s.trace_id, s.span_id, s.parent_span_id
                if (
                    len(tid) != 16
                    or len(sid) != 8
                    or tid == _ZERO_TRACE
                    or sid == _ZERO_SPAN
                    or (parent and len(parent) != 8)
                ):
                    out.reject(1, "spans need a 16-byte trace_id and an 8-byte span_id")
                    continue
                if s.start_time_unix_nano > LATEST or s.end_time_unix_nano > LATEST:
                    out.reject(1, TIME_RANGE)
                    continue
                events = (
                    json.dumps(
                        [
                            {
                                "time_ns": e.time_unix_nano,
                                "name": out.cut(e.name, NAME_LIMIT),
                                "attributes": out.attributes(e.attributes),
                            }
                            for e in s.events
                        ],
                        separators=(",", ":"),
                    )
                    if s.events
                    else "[]"
                )
                links = (
                    json.dumps(
                        [
                            {
                                "trace_id": out.cut(link.trace_id.hex(), 32),
                                "span_id": out.cut(link.span_id.hex(), 16),
                                "attributes": out.attributes(link.attributes),
                            }
                            for link in s.links
                        ],
                        separators=(",", ":"),
                    )
                    if s.links
                    else "[]"
                )
                start = s.start_time_unix_nano
                rows.append(
                    (
                        tid.hex(),
                        sid.hex(),
                        parent.hex(),
                        service,
                        s.name if len(s.name) <= NAME_LIMIT else out.cut(s.name, NAME_LIMIT),
                        s.kind,
                        start,
                        max(s.end_time_unix_nano - start, 0),
                        s.status.code,
                        out.cut(s.status.message, VALUE_LIMIT),
                        _attributes_json(s.attributes, out),
                        events,
                        links,
                        scope,
                        resource_key,
                    )
                )
    return out


def logs(request: ExportLogsServiceRequest) -> Decoded:
    """Rows for the ``logs`` table."""
    out = Decoded()
    rows = out.rows
    for rl in request.resource_logs:
        service, resource_key = _resource(rl.resource, out)
        for sl in rl.scope_logs:
            scope = out.cut(sl.scope.name, NAME_LIMIT)
            for r in sl.log_records:
                trace_id = r.trace_id.hex() if r.trace_id else ""
                span_id = r.span_id.hex() if r.span_id else ""
                if (r.trace_id and len(r.trace_id) != 16) or (r.span_id and len(r.span_id) != 8):
                    out.reject(1, "log records' trace_id must be 16 bytes and span_id 8 bytes")
                    continue
                if r.time_unix_nano > LATEST or r.observed_time_unix_nano > LATEST:
                    out.reject(1, TIME_RANGE)
                    continue
                body = out.value(r.body, BODY_LIMIT)
                rows.append(
                    (
                        r.time_unix_nano or r.observed_time_unix_nano,
                        service,
                        r.severity_number,
                        out.cut(r.severity_text, NAME_LIMIT),
                        body if isinstance(body, str) else json.dumps(body),
                        _attributes_json(r.attributes, out),
                        trace_id,
                        span_id,
                        scope,
                        resource_key,
                    )
                )
    return out


def _explicit_buckets(
    p: metrics_pb2.ExponentialHistogramDataPoint,
) -> tuple[list[float], list[int]]:
    """Positive buckets of an exponential histogram as explicit bounds and counts.

    Bucket ``i`` of the exponential encoding is ``(base**i, base**(i+1)]``; the zero
    bucket becomes the first explicit bucket. Negative buckets are left out.
    """
    base = 2.0 ** (2.0**-p.scale)
    offset = p.positive.offset
    n = len(p.positive.bucket_counts)
    bounds = [base ** (offset + i) for i in range(n + 1)]
    return bounds, [p.zero_count, *p.positive.bucket_counts, 0]


def metrics(request: ExportMetricsServiceRequest) -> Decoded:
    """Rows for the ``points`` table (one row per data point)."""
    out = Decoded()
    rows = out.rows
    for rm in request.resource_metrics:
        service, resource_key = _resource(rm.resource, out)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if not m.name or kind is None:
                    count = len(getattr(m, kind).data_points) if kind else 1
                    out.reject(count, "metrics need a name and data")
                    continue
                if len(m.name) > NAME_LIMIT:
                    out.reject(
                        len(getattr(m, kind).data_points),
                        f"metric names must be at most {NAME_LIMIT} characters",
                    )
                    continue
                unit = out.cut(m.unit, NAME_LIMIT)
                head = (service, m.name, kind, unit, out.cut(m.description, VALUE_LIMIT))
                data = getattr(m, kind)
                monotonic = int(getattr(data, "is_monotonic", False))
                temporality = getattr(data, "aggregation_temporality", 0)
                for p in data.data_points:
                    if (
                        max(p.time_unix_nano, p.start_time_unix_nano, getattr(p, "count", 0))
                        > LATEST
                    ):
                        out.reject(1, TIME_RANGE)
                        continue
                    number: float | None = None
                    count_: int | None = None
                    sum_: float | None = None
                    bounds = buckets = ""
                    if kind in ("gauge", "sum"):
                        number = (
                            p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        )
                    elif kind == "histogram":
                        count_, sum_ = p.count, p.sum
                        bounds = json.dumps(list(p.explicit_bounds))
                        buckets = json.dumps(list(p.bucket_counts))
                    elif kind == "exponential_histogram":
                        count_, sum_ = p.count, p.sum
                        try:
                            b, c = _explicit_buckets(p)
                        except OverflowError:  # a bucket bound beyond a float
                            out.reject(1, "exponential histogram buckets beyond 1.8e308")
                            continue
                        bounds, buckets = json.dumps(b), json.dumps(c)
                    else:  # summary
                        count_, sum_ = p.count, p.sum
                        bounds = json.dumps([q.quantile for q in p.quantile_values])
                        buckets = json.dumps([q.value for q in p.quantile_values])
                    rows.append(
                        (
                            *head,
                            monotonic,
                            temporality,
                            _attributes_json(p.attributes, out),
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                            number,
                            count_,
                            sum_,
                            bounds,
                            buckets,
                            resource_key,
                        )
                    )
    return out


DECODERS = {"traces": spans, "metrics": metrics, "logs": logs}


def decode(signal: str, message: Message) -> Decoded:
    """Rows of a parsed export request of *signal*."""
    decoder: Any = DECODERS[signal]
    result: Decoded = decoder(message)
    return result
