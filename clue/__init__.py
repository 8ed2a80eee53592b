"""clue: observability for Python microservices.

``clue.configure()`` sets up logging and OpenTelemetry in one call;
``clue.log`` is the context-carried logger; ``clue.grpc`` and ``clue.asgi``
hold the interceptors and middleware; ``clue.health`` and ``clue.debug``
serve health checks, debug toggling and profiling.
"""

from clue.telemetry import configure, shutdown

__version__ = "0.1.0"

__all__ = ["__version__", "configure", "shutdown"]
