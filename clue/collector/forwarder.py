"""Pass received OTLP requests on to another OTLP/gRPC endpoint, in the background.

Ingest only enqueues; a worker thread sends. The queue is bounded: when the
downstream endpoint is slow or down, the oldest pending requests are dropped
(and counted) instead of slowing the senders down.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import grpc

_LOG = logging.getLogger("clue.collector.forward")
METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}


class Forwarder:
    """Sends serialized export requests to *target* (``host:port``) over insecure gRPC."""

    def __init__(self, target: str, *, max_queue: int = 256, timeout: float = 5.0) -> None:
        self.target = target
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._timeout = timeout
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=max_queue)
        self._ready = threading.Condition()
        self._closed = False
        self._channel = grpc.insecure_channel(target)
        self._calls = {
            signal: self._channel.unary_unary(method, None, None)
            for signal, method in METHODS.items()
        }
        self._thread = threading.Thread(
            target=self._run, name="clue-collector-forward", daemon=True
        )
        self._thread.start()

    def submit(self, signal: str, request: bytes) -> None:
        """Queue one serialized export request; never blocks."""
        with self._ready:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append((signal, request))
            self._ready.notify()

    def stats(self) -> dict[str, int | str]:
        with self._ready:
            pending = len(self._queue)
        return {
            "target": self.target,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "pending": pending,
        }

    def _run(self) -> None:
        last_warning = 0.0
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                signal, request = self._queue.popleft()
            try:
                self._calls[signal](request, timeout=self._timeout)
                self.sent += 1
            except grpc.RpcError as exc:
                self.failed += 1
                if time.monotonic() - last_warning > 10:
                    last_warning = time.monotonic()
                    _LOG.warning("forwarding to %s failed: %s", self.target, exc.code())

    def close(self, grace: float = 2.0) -> None:
        """Send what is queued (for up to *grace* seconds), then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(grace)
        self._channel.close()
