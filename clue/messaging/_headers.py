"""Trace context, baggage and clue's request id in message headers, written and read.

Headers come from the network: reading them never raises. A value longer
than ``MAX_VALUE`` characters, not text, or not UTF-8 is treated as absent,
so a bad ``traceparent`` makes the consumer start a new trace and a bad
request id is replaced by a fresh one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context, get_current
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from clue._otel_internals import w3c_only
from clue._request_id import HEADER, new_request_id
from clue.log import CURRENT

MAX_VALUE = 8192
"""Longest header value read, in characters (the W3C baggage limit, in bytes)."""
MAX_SCANNED = 64
"""Headers looked at for a name in another case, and kept by :func:`lowered`."""
REQUEST_ID_HEADER = HEADER
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

Headers = Mapping[str, Any]


def text_value(value: Any) -> str | None:
    """A header value as text within bounds, else None."""
    if type(value) is str:  # the usual case first: one check
        return value if len(value) <= MAX_VALUE else None
    if isinstance(value, bytes | bytearray):
        if len(value) > MAX_VALUE:
            return None
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and len(value) <= MAX_VALUE:
        return value
    return None


def header(headers: Headers | None, name: str) -> str | None:
    """The value of header ``name`` (``name`` in lower case; other cases found too)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        for scanned, key in enumerate(headers):
            if scanned >= MAX_SCANNED:
                return None
            if isinstance(key, str) and len(key) == len(name) and key.lower() == name:
                value = headers[key]
                break
        else:
            return None
    return text_value(value)


def lowered(headers: Headers | None) -> dict[str, Any]:
    """``headers`` with lower-case names (the first ``MAX_SCANNED`` text names), read once
    per message so that each look-up after is one ``dict.get``."""
    if not headers:
        return {}
    names: dict[str, Any] = {}
    for scanned, (name, value) in enumerate(headers.items()):
        if scanned >= MAX_SCANNED:
            break
        if isinstance(name, str):
            names[name.lower()] = value
    return names


class _LoweredGetter(Getter[dict[str, Any]]):
    """The getter of headers made by :func:`lowered`."""

    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = text_value(carrier.get(key))
        return None if value is None else [value]

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return list(carrier)


class _Getter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        value = header(carrier, key)
        return None if value is None else [value]

    def keys(self, carrier: Headers) -> list[str]:
        return [key for key in carrier if isinstance(key, str)]


class _Setter(Setter[MutableMapping[str, Any]]):
    def set(self, carrier: MutableMapping[str, Any], key: str, value: str) -> None:
        carrier[key] = value


GETTER = _Getter()
LOWERED_GETTER = _LoweredGetter()
SETTER = _Setter()


def inject(headers: MutableMapping[str, Any] | None = None) -> MutableMapping[str, Any]:
    """Put the current trace context, baggage and request id into ``headers`` (a new dict
    if None) and return them; a request id already there is kept."""
    if headers is None:
        headers = {}
    propagate.inject(headers, setter=SETTER)
    if REQUEST_ID_HEADER not in headers:
        request_id = CURRENT.get()[0].get("request_id")
        if isinstance(request_id, str) and request_id:
            headers[REQUEST_ID_HEADER] = request_id
    return headers


def extract(headers: Headers | None, context: Context | None = None) -> Context:
    """The trace context and baggage in ``headers`` over ``context`` (the current one if
    None); ``context`` itself when they carry none that is valid."""
    if context is None:
        context = get_current()
    if not headers:
        return context
    try:
        return propagate.extract(headers, context, getter=GETTER)
    except Exception:  # a propagator that fails on odd input must not fail the handler
        return context


def extract_lowered(headers: dict[str, Any], context: Context) -> Context:
    """:func:`extract` for headers made by :func:`lowered`."""
    if not headers:
        return context
    if "tracestate" not in headers and "baggage" not in headers:
        parent = _plain_traceparent(headers.get("traceparent"))
        if parent is not None and _W3C.only():
            return set_span_in_context(parent, context)
    try:
        return propagate.extract(headers, context, getter=LOWERED_GETTER)
    except Exception:  # a propagator that fails on odd input must not fail the handler
        return context


# A version-00 traceparent in its one canonical form: for it the W3C propagator's own
# pattern matches with these groups and nothing after them.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _plain_traceparent(value: Any) -> NonRecordingSpan | None:
    """The remote parent the W3C trace context propagator reads from ``value`` when it is a
    canonical traceparent with non-zero ids, else None (the propagators decide)."""
    if type(value) is not str or len(value) != 55:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return NonRecordingSpan(
        SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16)))
    )


class _W3CPropagators:
    """Whether the global propagators are W3C trace context (and baggage) alone, checked
    again when they are replaced: with them, a message without ``tracestate`` or ``baggage``
    headers carries its parent in ``traceparent`` alone, read by :func:`_plain_traceparent`."""

    def __init__(self) -> None:
        self._propagator: object = None
        self._only = False

    def only(self) -> bool:
        propagator = propagate.get_global_textmap()
        if propagator is not self._propagator:
            self._only = w3c_only(propagator)
            self._propagator = propagator
        return self._only


_W3C = _W3CPropagators()


def request_id(headers: Headers | None) -> str:
    """The request id in ``headers`` when it is at most 64 plain characters, else a new one."""
    return checked_request_id(header(headers, REQUEST_ID_HEADER))


def checked_request_id(value: Any) -> str:
    """``value`` if it is a request id of at most 64 plain characters, else a new one."""
    if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()
