"""The shop's gRPC calls: each failure becomes a :class:`ShopError` naming what was being done."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

import grpc

from clue import log
from reference_services.frontend.clients import CALL_TIMEOUT
from reference_services.frontend.errors import ShopError, from_rpc

Req = TypeVar("Req", contravariant=True)
Resp = TypeVar("Resp", covariant=True)
Metadata = Sequence[tuple[str, str]]


class Rpc(Protocol[Req, Resp]):
    """A unary gRPC method of an async stub (``stub.GetProduct``)."""

    def __call__(
        self, request: Req, /, *, timeout: float | None = None, metadata: Any = None
    ) -> Awaitable[Resp]: ...


async def call(
    doing: str,
    rpc: Rpc[Req, Resp],
    request: Req,
    metadata: Metadata | None = None,
    timeout: float = CALL_TIMEOUT,
) -> Resp:
    """Await one gRPC call (with ``metadata``, e.g. the visitor's token); a failure
    becomes a :class:`ShopError` naming ``doing``."""
    try:
        return await rpc(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as error:
        raise from_rpc(error, doing) from error


async def optional(
    doing: str,
    rpc: Rpc[Req, Resp],
    request: Req,
    metadata: Metadata | None = None,
    timeout: float = CALL_TIMEOUT,
) -> Resp | None:
    """Like :func:`call`, for page extras (ads, recommendations): a failure is logged
    and the page goes on without them (``None``)."""
    try:
        return await call(doing, rpc, request, metadata, timeout)
    except ShopError as error:
        log.warn("page extra unavailable", doing=doing, error=str(error))
        return None
