"""What every gRPC layer needs to know about one method and one call's outcome."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.util.types import AttributeValue

HEALTH_PREFIXES = ("/grpc.health.v1.",)

Metadata = Sequence[tuple[str, str | bytes]]
"""Invocation metadata: (key, value) pairs, binary values for ``-bin`` keys."""


@dataclass(frozen=True, slots=True)
class RpcInfo:
    """A gRPC method, parsed once: ``/pkg.Service/Method``."""

    full: str
    service: str
    method: str
    name: str  # span name: ``pkg.Service/Method``
    attributes: dict[str, AttributeValue]  # rpc.system, rpc.service, rpc.method


@functools.lru_cache(maxsize=4096)
def rpc_info(full_method: str | bytes) -> RpcInfo:
    """Parse a full method name (grpc may hand it over as bytes)."""
    full = full_method.decode() if isinstance(full_method, bytes) else full_method
    name = full.lstrip("/")
    service, _, method = name.rpartition("/")
    attributes: dict[str, AttributeValue] = {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": method,
    }
    return RpcInfo(full, service, method, name, attributes)


def is_expected(exc: BaseException | None) -> bool:
    """Whether an exception is gRPC's own way of ending a call (abort, cancel)."""
    if exc is None:
        return True
    # Sync servers raise a bare Exception() from context.abort; aio raises AbortError.
    return (
        type(exc) is Exception
        or isinstance(exc, grpc.RpcError | asyncio.CancelledError | GeneratorExit)
        or type(exc).__name__ == "AbortError"
    )


def server_code(context: Any, exc: BaseException | None) -> grpc.StatusCode:
    """The status a server call ends with, from its context and what it raised."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return _BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    if exc is None:
        return grpc.StatusCode.OK
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def sync_stream_code(context: Any, exc: BaseException | None) -> grpc.StatusCode:
    """The status a ``grpc.server`` streaming call ends with: a stream its client cancelled
    (or whose deadline passed) can end without an error in the handler (a request
    iterator raising a bare RpcError, a health Watch returning)."""
    code = server_code(context, exc)
    if code in _SET_BY_CLIENT or context.is_active():
        return code
    if context.time_remaining() <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


_SET_BY_CLIENT = frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED})


def error_code(exc: BaseException) -> grpc.StatusCode:
    """The status of a failed client call."""
    if isinstance(exc, grpc.RpcError):
        code = exc.code()
        if isinstance(code, grpc.StatusCode):
            return code
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def metadata_value(metadata: Metadata, key: str) -> str | None:
    """A string value of invocation metadata, or None."""
    for item in metadata or ():
        if item[0] == key and isinstance(item[1], str):
            return item[1]
    return None


_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}
