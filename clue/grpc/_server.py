"""Server interceptor plumbing: turn a layer's enter/exit hooks into grpc interceptors.

A layer observes one call: ``enter`` runs before the handler (with the call's
invocation metadata, read once for all layers, and the request when it is a
single message) and returns a state; ``exit`` runs after it with the
response (single message) or the exception, and the status code the call
ends with (computed once for all layers). One interceptor runs an ordered
tuple of layers (entered in order, exited in reverse), for ``grpc.server`` and
``grpc.aio.server`` alike; wrapped handlers are cached per method. A streaming
call's layers and handler steps all run in a context of the call's own, so its
context variables are reset where they were set, whoever closes the stream. A layer
that is a ``Watcher`` also sees each message of a stream (those the handler reads
from its request iterator, those it yields) and their counts at the end.
"""

from __future__ import annotations

import contextvars
import inspect
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import grpc
import grpc.aio

from clue.grpc._messages import AsyncCounted, Counted
from clue.grpc._rpc import Metadata, RpcInfo, rpc_info, server_code, sync_stream_code

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    GenericHandler = grpc.GenericRpcHandler[Any, Any]
Behavior = Callable[[Any, Any], Any]
Entered = list[tuple["Layer", Any]]


class Layer(Protocol):
    """One concern of a server call (tracing, logging, payloads, metrics)."""

    def enter(self, info: RpcInfo, context: Any, metadata: Metadata, request: Any) -> Any:
        """Start observing a call; ``request`` is None for client streams."""

    def exit(
        self,
        state: Any,
        context: Any,
        code: grpc.StatusCode,
        response: Any,
        exc: BaseException | None,
    ) -> None:
        """Finish observing it; ``response`` is None for server streams and failures."""


Layers = tuple[Layer, ...]


@runtime_checkable
class Watcher(Protocol):
    """A layer that also sees each message of a streaming call."""

    def message(self, state: Any, sent: bool, number: int, message: Any) -> None:
        """Message ``number`` (from 1) of the ``sent`` or received direction."""

    def counted(self, state: Any, sent: int | None, received: int | None) -> None:
        """The messages of each direction that is a stream (None: a single message), before
        the call's ``exit``."""


class _Stream:
    """The messages of one streaming call, to the entered layers that watch them."""

    __slots__ = ("_watching", "received", "sent")

    def __init__(self, entered: Entered, requests: bool, responses: bool) -> None:
        self._watching = [(layer, state) for layer, state in entered if isinstance(layer, Watcher)]
        self.sent = 0 if responses else None
        self.received = 0 if requests else None

    def on_sent(self, message: Any) -> None:
        self.sent = number = (self.sent or 0) + 1
        for layer, state in self._watching:
            layer.message(state, True, number, message)

    def on_received(self, message: Any) -> None:
        self.received = number = (self.received or 0) + 1
        for layer, state in self._watching:
            layer.message(state, False, number, message)

    def counted(self) -> None:
        for layer, state in self._watching:
            layer.counted(state, self.sent, self.received)


class _Cache:
    """Wrapped handlers by method, rebuilt only when the inner handler changes."""

    def __init__(self, layers: Layers, wrap: Callable[[Layers, RpcInfo, Handler], Handler]) -> None:
        self._layers = layers
        self._wrap = wrap
        self._handlers: dict[str, tuple[Handler, Handler]] = {}

    def get(self, method: str, handler: Handler | None) -> Handler | None:
        if handler is None:
            return None
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(self._layers, rpc_info(method), handler)
        self._handlers[method] = (handler, wrapped)
        return wrapped


class AsyncServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Layers as one ``grpc.aio`` server interceptor (entered in order, exited in reverse).

    One interceptor running every layer costs one continuation and one handler
    wrapper per call, instead of one per layer.
    """

    def __init__(self, *layers: Layer) -> None:
        self.layers = layers
        self._cache = _Cache(layers, _wrap_aio)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        return self._cache.get(handler_call_details.method, handler)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"AsyncServerInterceptor({_names(self.layers)})"


class ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Layers as one ``grpc.server`` interceptor (entered in order, exited in reverse)."""

    def __init__(self, *layers: Layer) -> None:
        self.layers = layers
        self._cache = _Cache(layers, _wrap_sync)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        return self._cache.get(handler_call_details.method, handler)

    def __repr__(self) -> str:
        return f"ServerInterceptor({_names(self.layers)})"


class _WrappedHandlers(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose method handlers run the layers."""

    def __init__(self, handlers: GenericHandler, cache: _Cache) -> None:
        self._handlers = handlers
        self._cache = cache

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._handlers.service(handler_call_details)
        return self._cache.get(handler_call_details.method, handler)


class InstrumentedServer:
    """A ``grpc.aio`` or ``grpc`` server whose handlers run the layers (entered in order,
    exited in reverse), wrapped once when they are added through this object.

    Generated ``add_..._to_server`` functions take it in place of the server; every
    other attribute (ports, start, stop) is the server's own.
    """

    def __init__(self, server: Any, *layers: Layer) -> None:
        self.server = server
        self.layers = layers
        self._cache = _Cache(
            layers, _wrap_aio if isinstance(server, grpc.aio.Server) else _wrap_sync
        )

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[GenericHandler]) -> None:
        """Add generic handlers whose method handlers run the layers."""
        self.server.add_generic_rpc_handlers(
            [_WrappedHandlers(handlers, self._cache) for handlers in generic_rpc_handlers]
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, Handler]
    ) -> None:
        """Add the method handlers of ``service_name``, each wrapped in the layers."""
        wrapped = {
            name: self._cache.get(f"/{service_name}/{name}", handler)
            for name, handler in method_handlers.items()
        }
        self.server.add_registered_method_handlers(service_name, wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def __repr__(self) -> str:
        return f"InstrumentedServer({self.server!r}, {_names(self.layers)})"


def _names(layers: Layers) -> str:
    """The layers' class names, for the reprs."""
    return ", ".join(type(layer).__name__ for layer in layers)


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


def _enter(layers: Layers, info: RpcInfo, context: Any, request: Any) -> Entered:
    """Enter every layer in order; if one fails, exit those already entered and re-raise."""
    entered: Entered = []
    try:
        metadata = context.invocation_metadata() or ()
        for layer in layers:
            entered.append((layer, layer.enter(info, context, metadata, request)))
    except BaseException as exc:
        _exit(entered, context, None, exc)
        raise
    return entered


def _exit(
    entered: Entered,
    context: Any,
    response: Any,
    exc: BaseException | None,
    code_of: Callable[[Any, BaseException | None], grpc.StatusCode] = server_code,
    stream: _Stream | None = None,
) -> None:
    """Exit the entered layers in reverse order, all of them even if one raises (a stream's
    counts first)."""
    failure: BaseException | None = None
    if stream is not None:
        try:
            stream.counted()
        except BaseException as error:
            failure = error
    code = code_of(context, exc)
    for layer, state in reversed(entered):
        try:
            layer.exit(state, context, code, response, exc)
        except BaseException as error:  # finish the other layers, then raise the first
            failure = failure or error
    if failure is not None:
        raise failure


def _awaitable(behavior: Behavior) -> Callable[[Any, Any], Awaitable[Any]]:
    """``behavior`` as a coroutine function (grpc.aio also runs plain functions)."""
    if inspect.iscoroutinefunction(behavior):
        return behavior

    async def call(request: Any, context: Any) -> Any:
        response = behavior(request, context)
        return await response if inspect.isawaitable(response) else response

    return call


def _wrap_aio(layers: Layers, info: RpcInfo, handler: Handler) -> Handler:
    inner = _behavior(handler)
    single_request = not handler.request_streaming

    if not handler.response_streaming:
        unary_inner = _awaitable(inner)

        async def unary(request: Any, context: Any) -> Any:
            entered = _enter(layers, info, context, request if single_request else None)
            stream = None
            if not single_request:
                stream = _Stream(entered, requests=True, responses=False)
                request = AsyncCounted(request, stream.on_received)
            try:
                response = await unary_inner(request, context)
            except BaseException as exc:
                _exit(entered, context, None, exc, stream=stream)
                raise
            _exit(entered, context, response, None, stream=stream)
            return response

        return _rebuild(handler, unary)

    async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
        # The call's own context: the layers enter and exit in it and every step of the
        # handler runs in it, so their context variables are reset where they were set
        # even when grpc drops the stream mid-send and the event loop closes it later,
        # from another task (opentelemetry-python #2606).
        scope = contextvars.copy_context()
        entered = scope.run(_enter, layers, info, context, request if single_request else None)
        stream = _Stream(entered, requests=not single_request, responses=True)
        if not single_request:
            request = AsyncCounted(request, stream.on_received)
        sent = stream.on_sent
        try:
            result = scope.run(inner, request, context)
            if inspect.isawaitable(result):  # handler writes with context.write()
                await _in_context(result, scope)
            elif isinstance(result, Iterator):
                while (message := scope.run(next, result, _END)) is not _END:
                    scope.run(sent, message)
                    try:
                        yield message
                    except GeneratorExit:
                        _close(result, scope)
                        raise
            else:
                messages = aiter(result)
                while True:
                    steps = anext(messages).__await__()
                    try:  # most steps are done at once: no coroutine for them
                        message = await _resume(steps, scope.run(steps.send, None), scope)
                    except StopIteration as done:
                        message = done.value
                    except StopAsyncIteration:
                        break
                    scope.run(sent, message)
                    try:
                        yield message
                    except GeneratorExit:
                        aclose = getattr(messages, "aclose", None)
                        if aclose is not None:
                            await _in_context(aclose(), scope)
                        raise
        except BaseException as exc:
            scope.run(_exit, entered, context, None, exc, server_code, stream)
            raise
        scope.run(_exit, entered, context, None, None, server_code, stream)

    return _rebuild(handler, stream)


def _wrap_sync(layers: Layers, info: RpcInfo, handler: Handler) -> Handler:
    inner = _behavior(handler)
    single_request = not handler.request_streaming
    # a client that cancels a stream may leave the handler ending without an error
    code_of = server_code if single_request and not handler.response_streaming else sync_stream_code

    if not handler.response_streaming:

        def unary(request: Any, context: Any) -> Any:
            entered = _enter(layers, info, context, request if single_request else None)
            stream = None
            if not single_request:
                stream = _Stream(entered, requests=True, responses=False)
                request = Counted(request, stream.on_received)
            try:
                response = inner(request, context)
            except BaseException as exc:
                _exit(entered, context, None, exc, code_of, stream)
                raise
            _exit(entered, context, response, None, code_of, stream)
            return response

        return _rebuild(handler, unary)

    def stream(request: Any, context: Any) -> Iterator[Any]:
        # As in grpc.aio: layers and handler steps in the call's own context, so a stream
        # closed by the garbage collector in another thread still resets its variables.
        scope = contextvars.copy_context()
        entered = scope.run(_enter, layers, info, context, request if single_request else None)
        stream = _Stream(entered, requests=not single_request, responses=True)
        if not single_request:
            request = Counted(request, stream.on_received)
        sent = stream.on_sent
        try:
            messages = iter(scope.run(inner, request, context))
            while (message := scope.run(next, messages, _END)) is not _END:
                scope.run(sent, message)
                try:
                    yield message
                except GeneratorExit:
                    _close(messages, scope)
                    raise
        except BaseException as exc:
            scope.run(_exit, entered, context, None, exc, code_of, stream)
            raise
        scope.run(_exit, entered, context, None, None, code_of, stream)

    return _rebuild(handler, stream)


_END = object()
"""What ``next`` returns for a handler's exhausted iterator."""


async def _in_context(awaitable: Awaitable[Any], scope: contextvars.Context) -> Any:
    """Await ``awaitable`` with each of its steps run in ``scope`` (a task would run them
    in its own context; this runs one awaitable in the call's, inside the current task)."""
    steps = awaitable.__await__()
    try:
        waiting = scope.run(steps.send, None)
    except StopIteration as done:
        return done.value
    return await _resume(steps, waiting, scope)


@types.coroutine
def _resume(steps: Generator[Any, Any, Any], waiting: Any, scope: contextvars.Context) -> Any:
    """Go on with an awaitable's ``steps``, now ``waiting`` (for its task to wake it up),
    each later step run in ``scope``."""
    while True:
        try:
            sent, thrown = (yield waiting), None
        except BaseException as exc:  # cancellation included: the awaitable handles it
            sent, thrown = None, exc
        try:
            if thrown is None:
                waiting = scope.run(steps.send, sent)
            else:
                waiting = scope.run(steps.throw, thrown)
        except StopIteration as done:
            return done.value
        finally:
            thrown = None  # an exception raised on is not kept by its own traceback's frame


def _close(messages: Iterator[Any], scope: contextvars.Context) -> None:
    """Close a handler's iterator that was left early, in the call's context."""
    close = getattr(messages, "close", None)
    if close is not None:
        scope.run(close)
