"""clue: observability for Python microservices.

``clue.configure()`` sets up logging and OpenTelemetry in one call;
``clue.log`` is the context-carried logger; ``clue.grpc`` and ``clue.asgi``
hold the interceptors and middleware; ``clue.health`` and ``clue.debug``
serve health checks, debug toggling and profiling.

Inside clue, one import rule: each package (``clue.log``, ``clue.telemetry``, ...;
a module directly under clue/, such as ``clue.asgi``, is a package of its own)
is entered through its ``__init__`` only. Another package imports what that
``__init__`` exports: its public names, in ``__all__``, and the names it shares
with clue's other packages, re-exported as ``from m import x as x`` and left
out of ``__all__`` (clue's internal API, not for programs). Never a submodule
of another package, never an underscored name of one. The underscored modules
directly under clue/ (``clue._otel_internals``, ``clue._payload``,
``clue._request_id``, ``clue._status``) are the internals every package shares.
``tests/test_import_rule.py`` checks it.
"""

from clue.telemetry import configure, instrument, shutdown

__version__ = "0.1.0"

__all__ = ["__version__", "configure", "instrument", "shutdown"]
