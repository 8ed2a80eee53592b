"""``@instrument``: a span around a function, coroutine function or (async) generator.

A generator's span covers its whole iteration, until it is exhausted, fails or
is closed. Each of its steps runs in a context of the generator's own (copied
once, the span made current in it), never by attaching a token across a
``yield``: a generator may be resumed or closed from another context, where
detaching that token would fail (opentelemetry-python #2606).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import types
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import Any, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from clue.log import STATE, clean_value
from clue.telemetry.bootstrap import TRACER_PROVIDER

F = TypeVar("F", bound=Callable[..., Any])

_TRACER = TRACER_PROVIDER.get_tracer("clue.instrument")  # follows every configure()


@overload
def instrument(func: F, /) -> F: ...
@overload
def instrument(
    *, name: str | None = None, record: Iterable[str] = (), kind: SpanKind = SpanKind.INTERNAL
) -> Callable[[F], F]: ...
def instrument(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    record: Iterable[str] = (),
    kind: SpanKind = SpanKind.INTERNAL,
) -> F | Callable[[F], F]:
    """Decorate a function to run it in a span named ``name`` (default: its qualified name).

    ``record`` names the arguments set as span attributes, sanitized like log
    values (sensitive names masked, long values cut, containers as JSON). An
    exception is recorded on the span and sets its status to error. A generator
    or async generator's span lasts until it is exhausted or closed.
    """
    recorded = (record,) if isinstance(record, str) else tuple(record)

    def decorate(target: F) -> F:
        if not callable(target):
            raise TypeError(f"instrument decorates a function, got {type(target).__name__}")
        return cast(F, _wrap(target, name or target.__qualname__, recorded, kind))

    return decorate if func is None else decorate(func)


def _wrap(func: Callable[..., Any], name: str, record: tuple[str, ...], kind: SpanKind) -> Any:
    signature = inspect.signature(func)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [r for r in record if r not in signature.parameters and not takes_any]
    if unknown:
        raise ValueError(f"record names no argument of {name}: {', '.join(map(repr, unknown))}")
    base = {"code.function": func.__qualname__, "code.namespace": func.__module__}

    def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
        span = _TRACER.start_span(name, kind=kind, attributes=base)
        if record and span.is_recording():  # nothing is formatted for an unsampled call
            _record(span, signature, record, args, kwargs)
        return span

    if inspect.isasyncgenfunction(func):

        async def agen(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            span = start(args, kwargs)
            scope = _scope_of(span)
            with _ending(span):
                steps = scope.run(func, *args, **kwargs)
                sent: Any = None
                thrown: BaseException | None = None
                while True:
                    step = steps.asend(sent) if thrown is None else steps.athrow(thrown)
                    thrown = None
                    try:
                        item = await _in_context(step, scope)
                    except StopAsyncIteration:
                        return
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await _in_context(steps.aclose(), scope)
                        raise
                    except BaseException as exc:
                        sent, thrown = None, exc

        return functools.wraps(func)(agen)

    if inspect.isgeneratorfunction(func):

        def gen(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            span = start(args, kwargs)
            scope = _scope_of(span)
            with _ending(span):
                steps = scope.run(func, *args, **kwargs)
                sent: Any = None
                thrown: BaseException | None = None
                while True:
                    try:
                        if thrown is None:
                            item = scope.run(steps.send, sent)
                        else:
                            item = scope.run(steps.throw, thrown)
                    except StopIteration as done:
                        return done.value
                    finally:
                        thrown = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        scope.run(steps.close)
                        raise
                    except BaseException as exc:
                        sent, thrown = None, exc

        return functools.wraps(func)(gen)

    if inspect.iscoroutinefunction(func):

        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            span = start(args, kwargs)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                return await func(*args, **kwargs)
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return functools.wraps(func)(coroutine)

    # attach and detach rather than trace.use_span: a context manager costs a generator
    def call(*args: Any, **kwargs: Any) -> Any:
        span = start(args, kwargs)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    return functools.wraps(func)(call)


def _failed(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` and set its status to error (a generator's close is not
    a failure)."""
    if not isinstance(exc, GeneratorExit) and span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class _ending:
    """Ends ``span`` on leaving the block, an exception recorded (see :func:`_failed`)."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if exc is not None:
            _failed(self._span, exc)
        self._span.end()


def _record(
    span: Span,
    signature: inspect.Signature,
    record: tuple[str, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return  # the call itself raises the same error, recorded on the span
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    for parameter in signature.parameters.values():  # **kwargs: its names, as arguments
        if parameter.kind is parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(parameter.name, {}))
    chosen = {r: arguments[r] for r in record if r in arguments}
    for key, value in clean_value(chosen, STATE.sensitive_keys, STATE.max_value_size).items():
        if value is None:
            continue
        if not isinstance(value, str | bool | int | float):
            value = json.dumps(value, ensure_ascii=False)
        span.set_attribute(key, value)


def _scope_of(span: Span) -> contextvars.Context:
    """A copy of the current context with ``span`` current in it, for a generator's steps."""
    scope = contextvars.copy_context()
    scope.run(otel_context.attach, trace.set_span_in_context(span))  # never detached: its own
    return scope


async def _in_context(awaitable: Any, scope: contextvars.Context) -> Any:
    """Await ``awaitable`` with each of its steps run in ``scope``."""
    steps = awaitable.__await__()
    try:
        waiting = scope.run(steps.send, None)
    except StopIteration as done:
        return done.value
    return await _resume(steps, waiting, scope)


@types.coroutine
def _resume(steps: Generator[Any, Any, Any], waiting: Any, scope: contextvars.Context) -> Any:
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
            thrown = None
