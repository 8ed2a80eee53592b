"""One-call OpenTelemetry bootstrap: traces, metrics and logs (see docs/telemetry.md).

Examples:
    >>> import clue
    >>> clue.configure("checkout", "1.2.0")   # exporters from the OTEL_* environment
    >>> clue.shutdown()                        # also runs at exit
"""

from clue.telemetry.bootstrap import configure, force_flush, meter, shutdown, stats, tracer
from clue.telemetry.decorator import instrument
from clue.telemetry.prometheus import metrics_app
from clue.telemetry.sampler import AdaptiveSampler

# isort: split
# clue's internal API: what clue's other packages use (the rule is in clue/__init__.py).
# Re-exported as "x as x" and left out of __all__: not for programs, may change any time.
from clue.telemetry.bootstrap import METER_PROVIDER as METER_PROVIDER
from clue.telemetry.bootstrap import TRACER_PROVIDER as TRACER_PROVIDER
from clue.telemetry.bootstrap import flush_at_stop as flush_at_stop
from clue.telemetry.forked import in_child as in_child
from clue.telemetry.histograms import REGISTRY as REGISTRY
from clue.telemetry.histograms import bind as bind
from clue.telemetry.siblings import ask_others as ask_others
from clue.telemetry.siblings import on_command as on_command
from clue.telemetry.siblings import workers_dir as workers_dir

__all__ = [
    "AdaptiveSampler",
    "configure",
    "force_flush",
    "instrument",
    "meter",
    "metrics_app",
    "shutdown",
    "stats",
    "tracer",
]
