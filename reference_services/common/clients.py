"""Traced gRPC clients of the other boutique services, and their health pingers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc.aio

import clue.grpc
from clue import health

S = TypeVar("S")

#: Channel options of every call to another boutique service. gRPC waits
#: between reconnection attempts with a back-off that grows to 2 minutes by
#: default, so a service that came back stayed unreachable for seconds; capped
#: at a quarter of a second, a client reconnects within that of the service's return.
#: (Attempts on loopback or a LAN cost one SYN each: cheap even while it is down.)
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
)


class Clients:
    """Channels to downstream services, opened on the running loop, closed together."""

    def __init__(self) -> None:
        self._channels: list[grpc.aio.Channel] = []
        self.pingers: list[health.Pinger] = []

    def stub(self, name: str, address: str, stub_class: Callable[[grpc.aio.Channel], S]) -> S:
        """A stub for the service ``name`` at ``address``; it is also pinged for health."""
        channel = clue.grpc.async_insecure_channel(address, options=CHANNEL_OPTIONS)
        self._channels.append(channel)
        self.pingers.append(health.GRPCPinger(name, address, timeout=1.0))
        return stub_class(channel)

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels:
            await channel.close(None)
        self._channels.clear()
