"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``.

Accepts ``application/x-protobuf`` and ``application/json`` bodies, optionally
gzip-compressed, and answers in the request's encoding: 200 with the export
response (partial success included), 400 with a ``google.rpc.Status`` for a
malformed body, 413 above the size limit, 415 for other media types.
"""

from __future__ import annotations

import logging
import zlib

from google.protobuf.message import Message
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clue.collector import otlp
from clue.collector.ingest import Ingest

_LOG = logging.getLogger("clue.collector.http")
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class _TooLarge(Exception):
    pass


def _encode(message: Message, json_encoded: bool, status: int = 200) -> Response:
    if json_encoded:
        return Response(otlp.to_json(message), status, media_type=JSON)
    return Response(message.SerializeToString(), status, media_type=PROTOBUF)


def _error(status: int, code: int, text: str, json_encoded: bool) -> Response:
    return _encode(Status(code=code, message=text), json_encoded, status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise _TooLarge
    if not inflater.eof:
        raise zlib.error("truncated gzip stream")
    return out


def http_app(ingest: Ingest, max_bytes: int) -> Starlette:
    """The Starlette application of the OTLP/HTTP receiver."""

    async def receive(request: Request) -> Response:
        signal = request.url.path.rsplit("/", 1)[-1]
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        json_encoded = media == JSON
        if media not in (PROTOBUF, JSON):
            return _error(
                415, 3, f"unsupported content type {media!r}; use {PROTOBUF} or {JSON}", False
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("gzip", "identity", ""):
            return _error(415, 3, f"unsupported content encoding {encoding!r}", json_encoded)
        too_large = f"request larger than the {max_bytes}-byte limit"
        try:
            body = await _read_body(request, max_bytes)
            if encoding == "gzip":
                body = _gunzip(body, max_bytes)
        except _TooLarge:
            return _error(413, 8, too_large, json_encoded)
        except zlib.error as exc:
            return _error(400, 3, f"invalid gzip body: {exc}", json_encoded)

        def store() -> Message:
            message = otlp.parse(signal, body, json_encoded=json_encoded)
            return ingest.export(signal, message, None if json_encoded else body)

        try:
            answer = await run_in_threadpool(store)
        except otlp.MalformedRequest as exc:
            return _error(400, 3, str(exc), json_encoded)
        except Exception:
            _LOG.exception("storing %s failed", signal)
            return _error(500, 13, f"the collector could not store the {signal}", json_encoded)
        return _encode(answer, json_encoded)

    routes = [Route(f"/v1/{signal}", receive, methods=["POST"]) for signal in otlp.REQUEST_TYPES]
    return Starlette(routes=routes)
