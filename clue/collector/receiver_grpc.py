"""OTLP/gRPC receiver: the Export methods of the trace, metrics and logs services.

Requests arrive as bytes and are parsed here, so a malformed payload is answered
with ``INVALID_ARGUMENT``; gRPC itself answers ``RESOURCE_EXHAUSTED`` to
requests above the configured maximum size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from clue.collector import otlp
from clue.collector.ingest import Ingest

_LOG = logging.getLogger("clue.collector.grpc")
SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


def _export_method(ingest: Ingest, signal: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def export(raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            request = otlp.parse(signal, raw)
        except otlp.MalformedRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            return ingest.export(signal, request, raw).SerializeToString()
        except Exception:
            _LOG.exception("storing %s failed", signal)
            context.abort(grpc.StatusCode.INTERNAL, f"the collector could not store the {signal}")

    return export


def grpc_server(ingest: Ingest, host: str, port: int, max_bytes: int) -> tuple[grpc.Server, int]:
    """A configured (not yet started) gRPC server and the port it is bound to."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="clue-collector-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=64,  # beyond: RESOURCE_EXHAUSTED, which exporters retry
    )
    for signal, service in SERVICES.items():
        handler = grpc.unary_unary_rpc_method_handler(_export_method(ingest, signal))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
        )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}")
    return server, bound
