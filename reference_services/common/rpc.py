"""Turning domain errors into gRPC status codes, in one decorator.

Every error message that shows a caller's value goes through `quote`, so a
huge value is never echoed back (gRPC carries the message in a header).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

S = TypeVar("S")
Req = TypeVar("Req")
T = TypeVar("T")
#: The context of a call, as a servicer method receives it.
Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[S, Req, Context], Awaitable[T]]

QUOTED_PREFIX = 32
"""The most characters of a caller's value an error message shows."""
MAX_MESSAGE = 1000
"""The longest status message sent (a last guard: messages quote short prefixes)."""


def quote(value: str) -> str:
    """``value`` quoted for an error message: whole when short, else a prefix and its length."""
    if len(value) <= QUOTED_PREFIX:
        return repr(value)
    return f"{value[:QUOTED_PREFIX]!r}... ({len(value)} characters)"


class RpcFailure(Exception):
    """An error that is answered with a given status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_argument(message: str) -> RpcFailure:
    """INVALID_ARGUMENT: the request itself is wrong (name the field)."""
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RpcFailure:
    """NOT_FOUND: the request names something that does not exist."""
    return RpcFailure(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> RpcFailure:
    """FAILED_PRECONDITION: the system is not in a state to do it."""
    return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> RpcFailure:
    """UNAVAILABLE: a dependency is down; retrying later may work."""
    return RpcFailure(grpc.StatusCode.UNAVAILABLE, message)


def rpc(method: Handler[S, Req, T]) -> Handler[S, Req, T]:
    """Decorate a servicer method: an `RpcFailure` (a MoneyError is one) becomes its status."""

    @functools.wraps(method)
    async def handler(self: S, request: Req, context: Context) -> T:
        try:
            return await method(self, request, context)
        except RpcFailure as exc:
            message = exc.message
            if len(message) > MAX_MESSAGE:
                message = message[:MAX_MESSAGE] + "..."
            await context.abort(exc.code, message)
        raise AssertionError("context.abort returned")  # pragma: no cover

    return handler
