"""Fields and request scopes carried by contextvars (across await, tasks and copied threads)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextvars import ContextVar, Token
from time import time_ns
from typing import Any

from opentelemetry.context import Context

from clue._otel_internals import is_sampled, span_context_in
from clue._request_id import CALLER_ID
from clue.log import pipeline
from clue.log.state import ERROR, INFO, STATE, WARN, Entry

Current = tuple[dict[str, Any], "RequestScope | None"]
CURRENT: ContextVar[Current] = ContextVar("clue.log", default=({}, None))
"""The fields of every entry logged here, and the request scope they are logged in (one
variable: a request scope sets both at once, a log call reads both at once)."""


def outgoing_request_id() -> str | None:
    """The current scope's request id for an outgoing call's ``x-request-id``, so the callee
    logs under its caller's id; None when there is none, or one a server would not take on
    (it would mint its own anyway)."""
    request_id = CURRENT.get()[0].get("request_id")
    if isinstance(request_id, str) and CALLER_ID.fullmatch(request_id):
        return request_id
    return None


class Fields:
    """Context manager adding fields to every entry logged inside its block."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields
        self._token: Token[Current] | None = None

    def __enter__(self) -> None:
        fields, scope = CURRENT.get()
        self._token = CURRENT.set(({**fields, **self._fields}, scope))

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            CURRENT.reset(self._token)
            self._token = None


def context(**fields: Any) -> Fields:
    """Add ``fields`` to every entry logged inside the ``with`` block (contextvars: they
    follow ``await``, tasks and ``contextvars``-copied threads)."""
    return Fields(fields)


class RequestScope:
    """The log buffer of one request, a context manager (see :func:`request_scope`).

    While the scope is open and buffering, info and warn entries are kept raw
    in a bounded deque (the oldest are dropped on overflow). ``flush()`` writes
    them in order with their original timestamps; closing the scope drops them.
    """

    __slots__ = (
        "_count",
        "_entries",
        "_fields",
        "_otel_context",
        "_sampled",
        "_size",
        "_token",
        "open",
    )

    def __init__(self, fields: dict[str, Any], size: int) -> None:
        self._fields = fields
        self._size = size
        self._entries: deque[Entry] | None = None  # made on the first kept entry
        self._count = 0
        self._otel_context: Any = None
        self._sampled = False
        self._token: Token[Current] | None = None
        self.open = False

    def __enter__(self) -> RequestScope:
        fields = CURRENT.get()[0]
        if self._fields:
            fields = {**fields, **self._fields} if fields else self._fields
        self._token = CURRENT.set((fields, self))
        decide = STATE.disable_buffering
        # open: buffering; a scope the rule exempts writes its entries at once
        self.open = decide is None or not _exempt(decide, fields)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is not None:
            self.flush()
        self.close()
        if self._token is not None:
            token, self._token = self._token, None
            try:
                CURRENT.reset(token)
            except ValueError:  # exited from another context than it was entered in
                CURRENT.set((CURRENT.get()[0], None))

    def keep(self, entry: Entry) -> bool:
        """Buffer ``entry`` (an info or warn entry) if buffering is on.

        Buffering is off once the scope is closed, while debug is on, and for
        entries made under a sampled span (their trace is kept, so are they).
        """
        if not self.open or STATE.debug:
            return False
        otel_context = entry.otel_context
        if otel_context is not self._otel_context:
            self._otel_context = otel_context
            self._sampled = is_sampled(span_context_in(otel_context))
        if self._sampled:
            return False
        entries = self._entries
        if entries is None:
            entries = self._entries = deque(maxlen=self._size)
        self._count += 1
        entries.append(entry)
        return True

    @property
    def pending(self) -> int:
        """Number of entries waiting in the buffer."""
        return 0 if self._entries is None else len(self._entries)

    @property
    def dropped(self) -> int:
        """Entries lost to overflow since the last flush."""
        return max(0, self._count - self.pending)

    def take(self) -> list[Entry]:
        """Remove and return the buffered entries, preceded by a line counting drops if any."""
        entries: list[Entry] = []
        dropped = self.dropped
        if self._entries is None:
            return entries
        popleft = self._entries.popleft
        while True:
            try:
                entries.append(popleft())
            except IndexError:
                break
        self._count = 0
        if dropped and entries:
            first = entries[0]
            note = f"{dropped} earlier log entries of this request were dropped (buffer full)"
            ts, fields, otel_context = first.time_ns, first.fields, first.otel_context
            kv = {"dropped": dropped}
            entries.insert(0, Entry((WARN, note, kv, ts, fields, otel_context, None, None, False)))
        return entries

    def flush(self) -> None:
        """Write the buffered entries now."""
        pipeline.write(self.take())

    def close(self) -> None:
        """End the scope: buffered entries are dropped, later entries written directly."""
        self.open = False
        self._entries = None
        self._count = 0


_rule_failed = False  # the rule of disable_buffering raised: reported once


def _exempt(decide: Callable[[dict[str, Any]], bool], fields: dict[str, Any]) -> bool:
    """Whether ``decide`` exempts a scope of ``fields`` from buffering; if it raises, the
    scope is exempted (nothing is lost) and the failure is reported once."""
    global _rule_failed
    try:
        return bool(decide(dict(fields)))  # a copy: the rule cannot change them
    except Exception as exc:
        if not _rule_failed:
            _rule_failed = True
            report = f"disable_buffering raised {type(exc).__name__}: {exc}; scopes write at once"
            pipeline.write_entry(
                Entry((ERROR, report, {}, time_ns(), {}, Context(), None, None, False))
            )
        return True


def request_scope(**fields: Any) -> RequestScope:
    """The buffering scope of one request, with ``fields`` on all its entries.

    Use it as ``with log.request_scope(request_id=...) as scope:``. Leaving the
    block normally drops the buffer; leaving it by an exception flushes it first.
    """
    return RequestScope(fields, STATE.buffer_size)


def flush() -> None:
    """Write the current request scope's buffered entries now (no-op outside a scope)."""
    scope = CURRENT.get()[1]
    if scope is not None:
        scope.flush()


def route(entry: Entry) -> None:
    """Buffer ``entry`` in the current request scope, or write it (errors write the scope's
    buffered entries first)."""
    scope = CURRENT.get()[1]
    if scope is None:
        pipeline.write_entry(entry)
    elif entry.level >= ERROR:
        pipeline.write([*scope.take(), entry])
    elif entry.level < INFO or not scope.keep(entry):
        pipeline.write_entry(entry)
