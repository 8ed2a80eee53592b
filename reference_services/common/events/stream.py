"""The stream the events go through, and the NATS connection of a service."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import nats
from nats.js import api
from nats.js.errors import NotFoundError

import clue.nats
from clue import log
from reference_services.common.config import env_str
from reference_services.common.database import redact
from reference_services.common.events.contract import ROOT

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DUPLICATE_WINDOW = 120.0
"""Seconds JetStream remembers an event id (a relay's retry within it is dropped)."""
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def nats_url() -> str:
    """``NATS_URL`` (default nats://127.0.0.1:4222): the broker, or a comma-separated cluster."""
    return env_str("NATS_URL", DEFAULT_NATS_URL)


@dataclass(frozen=True)
class Stream:
    """A JetStream stream of events: ``BOUTIQUE`` with subjects ``boutique.>``.

    Another name (``EVENTS_STREAM``, or a test's) has its own subjects, the
    name in lower case in place of ``boutique``: streams may not share subjects.
    """

    name: str = "BOUTIQUE"
    duplicate_window: float = DUPLICATE_WINDOW

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"stream name {self.name[:40]!r}: 1 to 32 of A-Z a-z 0-9 _ -")

    @classmethod
    def from_env(cls) -> Stream:
        """The stream named by ``EVENTS_STREAM`` (default BOUTIQUE)."""
        return cls(env_str("EVENTS_STREAM", "BOUTIQUE"))

    @property
    def prefix(self) -> str:
        return self.name.lower()

    def subject(self, event_subject: str) -> str:
        """Where an event of ``event_subject`` (``boutique.order.placed``) is published."""
        return self.prefix + event_subject.removeprefix(ROOT)

    def event_subject(self, subject: str) -> str:
        """The contract's subject of a message published on ``subject``."""
        return ROOT + subject.removeprefix(self.prefix)

    def dead_letters(self, consumer: str) -> str:
        """The dead-letter subject of a consumer: ``boutique.dead.<consumer>``."""
        return f"{self.prefix}.dead.{consumer}"

    def config(self) -> api.StreamConfig:
        """File storage, kept a week, event ids remembered for ``duplicate_window`` seconds."""
        return api.StreamConfig(
            name=self.name,
            subjects=[f"{self.prefix}.>"],
            storage=api.StorageType.FILE,
            duplicate_window=self.duplicate_window,
            max_age=7 * 24 * 3600.0,
        )

    async def ensure(self, js: clue.nats.InstrumentedJetStream) -> None:
        """Create the stream, or bring an existing one to :meth:`config`."""
        try:
            await js.stream_info(self.name)
        except NotFoundError:
            await js.add_stream(self.config())
        else:
            await js.update_stream(self.config())

    async def delete(self, js: clue.nats.InstrumentedJetStream) -> None:
        """Delete the stream and its messages (tests)."""
        await js.delete_stream(self.name)


class Broker:
    """A service's NATS connection, instrumented by clue, made in the background.

    A service starts while the broker is down: :meth:`jetstream` waits for the
    connection, which is retried with back-off; once made, nats-py reconnects
    for ever. The broker is also the service's health pinger (``nats``).
    """

    name = "nats"
    timeout = 2.0

    def __init__(self, url: str | None = None, stream: Stream | None = None) -> None:
        self.url = url or nats_url()
        self.where = ",".join(redact(u) for u in self.url.split(","))
        """The URL without passwords, for logs."""
        self.stream = stream or Stream.from_env()
        self.client: clue.nats.InstrumentedClient | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start connecting (the stream is made as soon as the broker answers)."""
        if self._task is None:
            self._task = asyncio.create_task(self._connect(), name="nats-connect")

    async def _connect(self) -> None:
        delay = 0.1
        while not self._closing:  # as well as cancelled: nats-py may swallow a cancellation
            try:
                nc = await nats.connect(
                    self.url.split(","),
                    connect_timeout=2,
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=_error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=_reconnected,
                )
            except Exception as exc:
                log.warn("nats unreachable", url=self.where, error=str(exc), retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            client = clue.nats.instrument(nc)
            try:
                await self.stream.ensure(client.jetstream())
            except Exception as exc:
                log.warn("cannot set up the event stream, retrying", error=str(exc))
                await nc.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.client = client
            self._ready.set()
            return

    async def jetstream(self) -> clue.nats.InstrumentedJetStream:
        """The JetStream context, once connected and the stream made."""
        self.start()
        await self._ready.wait()
        assert self.client is not None
        return self.client.jetstream()

    async def ping(self) -> None:
        """Return when the broker answers a round trip."""
        if self.client is None or not self.client.nc.is_connected:
            raise ConnectionError(f"not connected to {self.where}")
        await self.client.nc.flush(timeout=int(self.timeout))

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warn("nats connection lost, reconnecting", url=self.where)

    async def close(self) -> None:
        """Stop connecting and close the connection."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.client is not None:
            await self.client.nc.close()
            self.client = None
        self._ready.clear()
        self._closing = False


# nats-py reports every failed reconnection attempt (two a second while the broker is
# down) as an error: at debug level; losing and regaining the connection are logged once.
async def _error(exc: Exception) -> None:
    log.debug("nats connection error", error=str(exc) or type(exc).__name__)


async def _reconnected() -> None:
    log.info("nats connection back")
