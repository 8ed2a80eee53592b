"""GRPCPinger: a dependency is healthy when grpc.health.v1 Check says SERVING."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import propagate

from clue.health._loopbound import LoopBound
from clue.health.pinger import PingError

#: gRPC's channels wait up to two minutes between reconnection attempts to a server
#: that was down; a pinger must see the server's return within a check or two, so its
#: channel retries at most a second apart.
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class GRPCPinger:
    """Ping a gRPC server with ``grpc.health.v1.Health/Check``.

    Healthy when the answer is ``SERVING`` for ``service`` ("" asks about
    the server as a whole). Pass ``credentials`` for a TLS channel;
    ``timeout`` (seconds) is both the RPC deadline and this pinger's timeout
    in the checker. The channel retries a server that was down at most a
    second apart (`RECONNECT_OPTIONS`); ``options`` adds or overrides channel
    arguments. The call carries the trace context of the check in its metadata.
    """

    def __init__(
        self,
        name: str,
        target: str,
        *,
        service: str = "",
        timeout: float | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: tuple[tuple[str, int | str], ...] = (),
    ) -> None:
        if not name:
            raise ValueError("a pinger needs a non-empty name")
        if not target:
            raise ValueError(f"pinger {name!r}: target must be a non-empty host:port")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"pinger {name!r}: timeout must be > 0, got {timeout}")
        self._name = name
        self.target = target
        self.service = service
        self.timeout = timeout
        arguments = tuple({**dict(RECONNECT_OPTIONS), **dict(options)}.items())
        self._channels = LoopBound(
            lambda: (
                grpc.aio.secure_channel(target, credentials, options=arguments)
                if credentials is not None
                else grpc.aio.insecure_channel(target, options=arguments)
            )
        )

    @property
    def name(self) -> str:
        """The dependency's name."""
        return self._name

    async def ping(self) -> None:
        """Call Check; raise `PingError` unless the status is SERVING."""
        stub = health_pb2_grpc.HealthStub(self._channels.get())
        request = health_pb2.HealthCheckRequest(service=self.service)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the check's span: the dependency's span is its child
        metadata = tuple(carrier.items()) or None
        response = await stub.Check(request, timeout=self.timeout, metadata=metadata)
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            raise PingError(f"{self.target} service {self.service!r} is {status}")

    async def aclose(self) -> None:
        """Close the channel of the running loop."""
        channel = self._channels.pop()
        if channel is not None:
            await channel.close(None)

    def __repr__(self) -> str:
        return f"GRPCPinger({self._name!r}, {self.target!r}, service={self.service!r})"
