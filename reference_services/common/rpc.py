"""Turning domain errors into gRPC status codes, in one decorator."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from reference_services.common.money import MoneyError

T = TypeVar("T")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[T]]


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


def rpc(method: Handler[T]) -> Handler[T]:
    """Decorate a servicer method: `RpcFailure` and `MoneyError` become its status."""

    @functools.wraps(method)
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await method(self, request, context)
        except RpcFailure as exc:
            await context.abort(exc.code, exc.message)
        except MoneyError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("context.abort returned")  # pragma: no cover

    return handler


def require(value: str, field: str) -> str:
    """``value`` if non-empty, else INVALID_ARGUMENT naming ``field``."""
    if not value.strip():
        raise invalid_argument(f"{field} must not be empty")
    return value
