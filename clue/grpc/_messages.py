"""The messages of a streaming call: one ``rpc.message`` span event a message (sent or
received, its number in the stream, its size) for the first ``EVENTS`` of each
direction, and the counts on the span when the call ends.

Server and client streams alike: the iterators here see the messages a handler or a
caller reads, and those a request iterator gives grpc to send.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from clue._semconv import (
    RECEIVED,
    RPC_GRPC_RECEIVED_COUNT,
    RPC_GRPC_SENT_COUNT,
    RPC_MESSAGE,
    RPC_MESSAGE_ID,
    RPC_MESSAGE_TYPE,
    RPC_MESSAGE_UNCOMPRESSED_SIZE,
    SENT,
)

OnMessage = Callable[[Any], None]
"""Called with each message of one direction of one stream."""

EVENTS = 64
"""Events a direction of a stream records at most: its first messages. A span keeps 128
events by default (the SDK drops the oldest beyond), and past them an event a message
would cost more than the messages themselves; the counts cover every message."""


def counted(messages: Any, on_message: OnMessage) -> Counted | AsyncCounted:
    """An iterable or async iterable of messages (what a streaming client call takes),
    each passed to ``on_message`` as it is read."""
    if isinstance(messages, AsyncIterable):
        return AsyncCounted(aiter(messages), on_message)
    return Counted(iter(messages), on_message)


def record(span: trace.Span, sent: bool, number: int, message: Any) -> None:
    """The event of message ``number`` (from 1) of ``span``'s stream, among the first."""
    if number > EVENTS or not span.is_recording():  # most calls are not sampled
        return
    attributes: dict[str, AttributeValue] = {
        RPC_MESSAGE_TYPE: SENT if sent else RECEIVED,
        RPC_MESSAGE_ID: number,
    }
    size = getattr(message, "ByteSize", None)  # a protobuf message; other payloads: no size
    if callable(size):
        attributes[RPC_MESSAGE_UNCOMPRESSED_SIZE] = size()
    span.add_event(RPC_MESSAGE, attributes)


def counts(span: trace.Span, sent: int | None, received: int | None) -> None:
    """The messages of ``span``'s stream, each direction that is a stream (not None)."""
    if not span.is_recording():
        return
    attributes: dict[str, AttributeValue] = {}
    if sent is not None:
        attributes[RPC_GRPC_SENT_COUNT] = sent
    if received is not None:
        attributes[RPC_GRPC_RECEIVED_COUNT] = received
    span.set_attributes(attributes)


class Counted:
    """``messages`` (an iterator), each passed to ``on_message`` as it is read."""

    __slots__ = ("_messages", "_on_message")

    def __init__(self, messages: Iterator[Any], on_message: OnMessage) -> None:
        self._messages = messages
        self._on_message = on_message

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> Any:
        message = next(self._messages)
        self._on_message(message)
        return message


class AsyncCounted:
    """``messages`` (an async iterator), each passed to ``on_message`` as it is read."""

    __slots__ = ("_messages", "_on_message")

    def __init__(self, messages: AsyncIterator[Any], on_message: OnMessage) -> None:
        self._messages = messages
        self._on_message = on_message

    def __aiter__(self) -> AsyncCounted:
        return self

    async def __anext__(self) -> Any:
        message = await anext(self._messages)
        self._on_message(message)
        return message


class Tally:
    """The numbers of the messages of one direction of a stream, for ``record``."""

    __slots__ = ("_sent", "_span", "count")

    def __init__(self, span: trace.Span, sent: bool) -> None:
        self._span = span
        self._sent = sent
        self.count = 0

    def __call__(self, message: Any) -> None:
        self.count += 1
        record(self._span, self._sent, self.count, message)


_NOTHING = object()


class Received:
    """The responses of a client's streaming call as its caller reads them, each recorded
    on the call's span. The end of the call waits for a read under way: its last message
    and its status arrive together, and the message goes on the span before it ends."""

    __slots__ = ("_lock", "_reading", "_span", "_then", "count")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._lock = threading.Lock()  # grpc ends a sync call from its own thread
        self._reading = 0
        self._then: Callable[[], None] | None = None
        self.count = 0

    def read(self, step: Callable[[], Any]) -> Any:
        """The next response, by ``step``."""
        with self._lock:
            self._reading += 1
        message = _NOTHING
        try:
            message = step()
            return message
        finally:
            self._read(message)

    async def aread(self, step: Callable[[], Awaitable[Any]]) -> Any:
        """The next response, by awaiting ``step()``."""
        with self._lock:
            self._reading += 1
        message = _NOTHING
        try:
            message = await step()
            return message
        finally:
            self._read(message)

    def _read(self, message: Any) -> None:
        if message is not _NOTHING:
            self.count += 1
            record(self._span, False, self.count, message)
        with self._lock:
            self._reading -= 1
            then, self._then = (self._then, None) if not self._reading else (None, self._then)
        if then is not None:
            then()

    def end(self, finish: Callable[[], None]) -> None:
        """Call ``finish`` (the end of the call) now, or once the read under way is done."""
        with self._lock:
            if self._reading:
                self._then = finish
                return
        finish()
