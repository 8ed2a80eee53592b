"""One-call OpenTelemetry bootstrap: traces, metrics and logs (see docs/telemetry.md).

>>> import clue
>>> clue.configure("checkout", "1.2.0")   # exporters from the OTEL_* environment
>>> clue.shutdown()                        # also runs at exit
"""

from clue.telemetry.bootstrap import configure, force_flush, meter, shutdown, stats, tracer
from clue.telemetry.prometheus import metrics_app
from clue.telemetry.sampler import AdaptiveSampler

__all__ = [
    "AdaptiveSampler",
    "configure",
    "force_flush",
    "meter",
    "metrics_app",
    "shutdown",
    "stats",
    "tracer",
]
