"""Server interceptor plumbing: turn a layer's enter/exit hooks into grpc interceptors.

A layer observes one call: ``enter`` runs before the handler (with the request
when it is a single message) and returns a state; ``exit`` runs after it with the
response (single message) or the exception. The same layer serves ``grpc.server``
and ``grpc.aio.server``; wrapped handlers are cached per method.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import grpc.aio

from clue.grpc._rpc import RpcInfo, rpc_info

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
Behavior = Callable[[Any, Any], Any]


class Layer(Protocol):
    """One concern of a server call (tracing, logging, payloads, metrics)."""

    def enter(self, info: RpcInfo, context: Any, request: Any) -> Any:
        """Start observing a call; ``request`` is None for client streams."""

    def exit(self, state: Any, context: Any, response: Any, exc: BaseException | None) -> None:
        """Finish observing it; ``response`` is None for server streams and failures."""


class _Cache:
    """Wrapped handlers by method, rebuilt only when the inner handler changes."""

    def __init__(self, layer: Layer, wrap: Callable[[Layer, RpcInfo, Handler], Handler]) -> None:
        self._layer = layer
        self._wrap = wrap
        self._handlers: dict[str, tuple[Handler, Handler]] = {}

    def get(self, method: str, handler: Handler | None) -> Handler | None:
        if handler is None:
            return None
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(self._layer, rpc_info(method), handler)
        self._handlers[method] = (handler, wrapped)
        return wrapped


class AioInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """A layer as a ``grpc.aio`` server interceptor."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self._cache = _Cache(layer, _wrap_aio)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        return self._cache.get(handler_call_details.method, handler)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"AioInterceptor({type(self.layer).__name__})"


class SyncInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """A layer as a ``grpc.server`` interceptor."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self._cache = _Cache(layer, _wrap_sync)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        return self._cache.get(handler_call_details.method, handler)

    def __repr__(self) -> str:
        return f"SyncInterceptor({type(self.layer).__name__})"


def _rebuild(handler: Handler, behavior: Behavior) -> Handler:
    factory: Any
    if handler.request_streaming and handler.response_streaming:
        factory = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        factory = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        factory = grpc.unary_stream_rpc_method_handler
    else:
        factory = grpc.unary_unary_rpc_method_handler
    rebuilt: Handler = factory(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    return rebuilt


def _behavior(handler: Handler) -> Behavior:
    behavior: Behavior = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream  # type: ignore[assignment]
    )
    return behavior


def _wrap_aio(layer: Layer, info: RpcInfo, handler: Handler) -> Handler:
    inner = _behavior(handler)
    single_request = not handler.request_streaming

    if not handler.response_streaming:

        async def unary(request: Any, context: Any) -> Any:
            state = layer.enter(info, context, request if single_request else None)
            try:
                response = inner(request, context)
                if inspect.isawaitable(response):
                    response = await response
            except BaseException as exc:
                layer.exit(state, context, None, exc)
                raise
            layer.exit(state, context, response, None)
            return response

        return _rebuild(handler, unary)

    async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
        state = layer.enter(info, context, request if single_request else None)
        try:
            result = inner(request, context)
            if inspect.isawaitable(result):  # handler writes with context.write()
                await result
            elif isinstance(result, Iterator):
                for message in result:
                    yield message
            else:
                async for message in result:
                    yield message
        except BaseException as exc:
            layer.exit(state, context, None, exc)
            raise
        layer.exit(state, context, None, None)

    return _rebuild(handler, stream)


def _wrap_sync(layer: Layer, info: RpcInfo, handler: Handler) -> Handler:
    inner = _behavior(handler)
    single_request = not handler.request_streaming

    if not handler.response_streaming:

        def unary(request: Any, context: Any) -> Any:
            state = layer.enter(info, context, request if single_request else None)
            try:
                response = inner(request, context)
            except BaseException as exc:
                layer.exit(state, context, None, exc)
                raise
            layer.exit(state, context, response, None)
            return response

        return _rebuild(handler, unary)

    def stream(request: Any, context: Any) -> Iterator[Any]:
        state = layer.enter(info, context, request if single_request else None)
        try:
            yield from inner(request, context)
        except BaseException as exc:
            layer.exit(state, context, None, exc)
            raise
        layer.exit(state, context, None, None)

    return _rebuild(handler, stream)
