"""Pingers: how a health check asks one dependency whether it is up."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Pinger(Protocol):
    """A dependency the health check pings.

    ``ping()`` may be a plain or an ``async`` method; it returns normally when
    the dependency is healthy and raises when it is not. A pinger may also
    have a ``timeout`` attribute (seconds) that overrides the checker's.
    """

    @property
    def name(self) -> str:
        """The dependency's name, as shown in health reports."""
        ...

    def ping(self) -> Any:
        """Return when healthy, raise when not (may be a coroutine function)."""
        ...


class PingError(Exception):
    """A dependency answered, but not with a healthy answer."""


class _FunctionPinger:
    """Shared part of the pingers made by `pinger`."""

    def __init__(self, name: str, fn: Callable[[], Any], timeout: float | None) -> None:
        if not name:
            raise ValueError("a pinger needs a non-empty name")
        if not callable(fn):
            raise TypeError(f"pinger {name!r}: {fn!r} is not callable")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"pinger {name!r}: timeout must be > 0, got {timeout}")
        self._name = name
        self._fn = fn
        self.timeout = timeout

    @property
    def name(self) -> str:
        """The dependency's name."""
        return self._name

    def __repr__(self) -> str:
        return f"pinger({self._name!r}, {self._fn!r})"


class FunctionPinger(_FunctionPinger):
    """A pinger calling a plain function (the checker runs it in a thread)."""

    def ping(self) -> Any:
        """Call the function; it raises when the dependency is unhealthy.

        An awaitable it returns is awaited by the checker on its event loop.
        """
        return self._fn()


class AsyncFunctionPinger(_FunctionPinger):
    """A pinger awaiting an ``async`` function."""

    async def ping(self) -> None:
        """Await the function; it raises when the dependency is unhealthy."""
        await self._fn()


def pinger(
    name: str,
    fn: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    timeout: float | None = None,
) -> FunctionPinger | AsyncFunctionPinger:
    """Make a pinger from a callable that raises when ``name`` is unhealthy.

    ``fn`` may be a plain function (run in its own thread so that a blocking
    driver never stalls the event loop) or an ``async`` function::

        async def ping_postgres() -> None:
            async with await psycopg.AsyncConnection.connect(DSN) as conn:
                await conn.execute("SELECT 1")

        checker = Checker(pinger("postgres", ping_postgres))

    ``timeout`` (seconds) overrides the checker's timeout for this pinger.
    """
    if inspect.iscoroutinefunction(fn):
        return AsyncFunctionPinger(name, fn, timeout)
    return FunctionPinger(name, fn, timeout)
