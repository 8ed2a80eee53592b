"""``configure()`` and ``shutdown()``: the three OpenTelemetry signals in one call."""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clue import log
from clue.log import configure_unless_configured
from clue.telemetry import exporters, histograms, sdk_logs, settings, siblings
from clue.telemetry import prometheus as prometheus_exposition
from clue.telemetry.proxy import SwappableMeterProvider, SwappableTracerProvider
from clue.telemetry.resilience import (
    LOGGER,
    STATS,
    FailureReport,
    GuardedLogExporter,
    GuardedMetricExporter,
    GuardedSpanExporter,
    count_drops,
    cut,
    prepare_runner,
    run_within,
)
from clue.telemetry.sampler import AdaptiveSampler, sampler_from_env

TRACER_PROVIDER = SwappableTracerProvider()
METER_PROVIDER = SwappableMeterProvider()

_DEFAULT_BATCH = 512  # the SDK's default export batch, capped by a smaller max_queue_size
_Guarded = GuardedSpanExporter | GuardedMetricExporter | GuardedLogExporter


@dataclass
class _Pipeline:
    """The SDK objects of one ``configure()`` call."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None
    logger_provider: LoggerProvider | None
    shutdown_timeout: float = settings.DEFAULT_SHUTDOWN_TIMEOUT
    exporters: list[_Guarded] = field(default_factory=list)
    histogram_slots: tuple[int, ...] = ()  # clue's histograms collected by the meter provider
    # the exporters clue made from names, and how to make each again (in a forked child)
    made: list[tuple[_Guarded, Callable[[], Any]]] = field(default_factory=list)

    def renew_exporters(self) -> None:
        """Send through exporters of this process's own (a forked child): the parent's
        connections stay the parent's, never used nor closed here."""
        for guarded, make in self.made:
            _INHERITED.append(guarded.inner)
            guarded.inner = make()

    def shutdown(self, keep_open: set[int]) -> None:
        """Flush and stop the three providers side by side within ``shutdown_timeout``;
        exporters in ``keep_open`` (ids, reused by the next call) stay open. At the
        deadline, what is left is dropped (counted in ``stats()``) and said once."""
        for guarded in self.exporters:
            guarded.guard.keep_open = id(guarded.inner) in keep_open
            if guarded.guard.report.failing:
                guarded.guard.abandon()  # the collector is down: do not wait for it
        millis = int(self.shutdown_timeout * 1000)
        steps: dict[str, Callable[[], object]] = {"shutdown-traces": self.tracer_provider.shutdown}
        if self.meter_provider is not None:
            steps["shutdown-metrics"] = partial(self.meter_provider.shutdown, millis)
        if self.logger_provider is not None:
            steps["shutdown-logs"] = self.logger_provider.shutdown
        # A tenth of the bound is kept for stopping what is left and for the exit itself.
        if not run_within(steps, self.shutdown_timeout * 0.9):
            for guarded in self.exporters:
                cut(guarded)
            LOGGER.warning(
                "telemetry shutdown reached its bound: what was not exported is dropped",
                extra={"shutdown_timeout_s": self.shutdown_timeout},
            )
        if self.meter_provider is not None:
            histograms.REGISTRY.detach(self.histogram_slots)

    def force_flush(self, timeout: float) -> bool:
        """Export what is queued, the three providers side by side, within ``timeout``."""
        millis = int(timeout * 1000)
        failed: list[str] = []

        def flush(signal: str, provider: Any) -> None:
            if not provider.force_flush(millis):
                failed.append(signal)

        providers = {
            "traces": self.tracer_provider,
            "metrics": self.meter_provider,
            "logs": self.logger_provider,
        }
        steps = {
            f"flush-{signal}": partial(flush, signal, provider)
            for signal, provider in providers.items()
            if provider is not None
        }
        return run_within(steps, timeout) and not failed


_lock = threading.RLock()
_pipeline: _Pipeline | None = None
_globals_set = False
_previous_sigterm: Any = None  # the handler clue's SIGTERM hook found, run after it
_in_sigterm_hook = False


def _instance(name: str, value: Any, kinds: tuple[type, ...]) -> Any:
    if value is not None and not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{name} must be an OpenTelemetry {expected}, got {value!r}")
    return value


def _positive_int(name: str, value: int | None) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _sampler(sampler: Sampler | None, max_sampled_per_second: float) -> Sampler:
    adaptive = AdaptiveSampler(max_sampled_per_second)  # validates the rate in every case
    if sampler is not None:
        return _instance("sampler", sampler, (Sampler,))  # type: ignore[no-any-return]
    return sampler_from_env() or adaptive


def configure(
    service_name: str | None = None,
    service_version: str | None = None,
    *,
    exporter: str | None = None,
    span_exporter: SpanExporter | None = None,
    metric_exporter: MetricExporter | MetricReader | None = None,
    log_exporter: LogRecordExporter | None = None,
    sampler: Sampler | None = None,
    max_sampled_per_second: float = 2.0,
    prometheus: bool = False,
    metric_interval: float | None = None,
    export_timeout: float | None = None,
    max_queue_size: int | None = None,
    failure_log_interval: float = 30.0,
    shutdown_timeout: float | None = None,
    handle_sigterm: bool = False,
) -> None:
    """Set up traces, metrics and logs for this process (see docs/telemetry.md).

    ``exporter`` ("otlp", "console", "none" or a comma-separated list) applies
    to the signals without an exporter object; unset, each signal reads
    ``OTEL_<SIGNAL>_EXPORTER`` and defaults to "otlp" when an OTLP endpoint is
    set, else to none. ``sampler`` wins over ``OTEL_TRACES_SAMPLER``, which wins
    over the default ``AdaptiveSampler(max_sampled_per_second)``.
    ``metric_interval`` (seconds, default ``OTEL_METRIC_EXPORT_INTERVAL`` or
    60), ``export_timeout`` (seconds per export, default the exporter's),
    ``max_queue_size`` (spans and log records waiting for export) and
    ``failure_log_interval`` (seconds between two export failure reports) tune
    export. ``shutdown_timeout`` (seconds, default ``CLUE_SHUTDOWN_TIMEOUT`` or
    2) bounds a whole ``shutdown()``, the three signals together; what is not
    exported by then is dropped and counted. ``handle_sigterm=True`` (main
    thread only) also flushes on SIGTERM, then runs the handler that was there
    before, or terminates as without clue; by default clue leaves SIGTERM to
    the program and flushes at exit only.
    Calling it again replaces the previous set-up: the old providers
    are flushed and shut down and everything handed out follows the new ones.
    Logging not yet set up by ``clue.log.configure()`` gets its defaults (the
    stdlib bridge included). ``OTEL_SDK_DISABLED=true`` turns the rest into
    ``shutdown()``. Every bad value raises ``ValueError`` naming the argument
    or variable, before anything changes.
    """
    _check_sigterm_option(handle_sigterm)
    if settings.disabled():
        configure_unless_configured()
        shutdown()
        if handle_sigterm:
            _hook_sigterm()
        return
    resource = settings.resource(service_name, service_version)
    chosen_sampler = _sampler(sampler, max_sampled_per_second)
    interval = settings.seconds(
        "metric_interval", metric_interval, "OTEL_METRIC_EXPORT_INTERVAL", 60.0
    )
    timeout = (
        None if export_timeout is None else settings.positive("export_timeout", export_timeout)
    )
    report_every = settings.positive("failure_log_interval", failure_log_interval)
    bound = settings.shutdown_timeout(shutdown_timeout)
    queue = _positive_int("max_queue_size", max_queue_size)
    _instance("span_exporter", span_exporter, (SpanExporter,))
    _instance("metric_exporter", metric_exporter, (MetricExporter, MetricReader))
    _instance("log_exporter", log_exporter, (LogRecordExporter,))

    def chosen(signal: str, given: Any) -> list[tuple[Any, str, Callable[[], Any] | None]]:
        """Each exporter of ``signal``, where it sends, and how to make it again."""
        if given is not None:
            return [(given, type(given).__name__, None)]
        names = settings.exporter_names(signal, exporter)
        made: list[tuple[Any, str, Callable[[], Any] | None]] = []
        for name in names:
            if name != "prometheus":
                inner, where = exporters.build(signal, name, timeout)
                made.append((inner, where, partial(_exporter_named, signal, name, timeout)))
        return made

    span_exporters = chosen("traces", span_exporter)
    metric_exporters = chosen("metrics", metric_exporter)
    log_exporters = chosen("logs", log_exporter)
    serve_prometheus = bool(prometheus) or (
        metric_exporter is None and "prometheus" in settings.exporter_names("metrics", exporter)
    )
    shared = siblings.workers_dir()  # a bad CLUE_WORKERS_DIR fails here, before anything changes
    configure_unless_configured()

    with _lock:
        pipeline = _Pipeline(
            TracerProvider(resource=resource, sampler=chosen_sampler, shutdown_on_exit=False),
            None,
            None,
            bound,
        )
        export = _Export(queue, report_every, pipeline)
        for inner, where, make in span_exporters:
            processor = BatchSpanProcessor(
                export.guarded(GuardedSpanExporter, inner, "traces", where, make),
                max_queue_size=queue,
                max_export_batch_size=export.batch,
            )
            count_drops(processor, "traces", report_every)
            pipeline.tracer_provider.add_span_processor(processor)

        readers = [
            inner
            if isinstance(inner, MetricReader)
            else PeriodicExportingMetricReader(
                export.guarded(GuardedMetricExporter, inner, "metrics", where, make),
                export_interval_millis=interval * 1e3,
            )
            for inner, where, make in metric_exporters
        ]
        if serve_prometheus:
            readers.append(prometheus_exposition.reader())
        if readers:
            pipeline.meter_provider = MeterProvider(
                metric_readers=readers, resource=resource, shutdown_on_exit=False
            )
            pipeline.histogram_slots = histograms.REGISTRY.attach(readers, resource)

        if log_exporters:
            logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            for inner, where, make in log_exporters:
                log_processor = BatchLogRecordProcessor(
                    export.guarded(GuardedLogExporter, inner, "logs", where, make),
                    max_queue_size=queue,
                    max_export_batch_size=export.batch,
                )
                count_drops(log_processor, "logs", report_every)
                logger_provider.add_log_record_processor(log_processor)
            pipeline.logger_provider = logger_provider

        _activate(pipeline, report_every)
    if shared is not None:
        siblings.share(shared)
    if handle_sigterm:
        _hook_sigterm()


@dataclass
class _Export:
    """Wraps the exporters of one set-up and keeps them on its pipeline."""

    queue: int | None
    report_every: float
    pipeline: _Pipeline

    @property
    def batch(self) -> int | None:
        return None if self.queue is None else min(self.queue, _DEFAULT_BATCH)

    def guarded(
        self, kind: Any, inner: Any, signal: str, where: str, make: Callable[[], Any] | None
    ) -> Any:
        wrapped = kind(inner, FailureReport(signal, where, self.report_every))
        self.pipeline.exporters.append(wrapped)
        if make is not None:
            self.pipeline.made.append((wrapped, make))
        return wrapped


def _exporter_named(signal: str, name: str, timeout: float | None) -> Any:
    exporter, _ = exporters.build(signal, name, timeout)
    return exporter


def _activate(pipeline: _Pipeline, report_every: float) -> None:
    global _pipeline
    _set_globals_once()
    sdk_logs.route(report_every)
    # the threads of a later shutdown, a step per signal, started while Python still can:
    # at exit (atexit) Python 3.12 and later refuse to start a thread
    prepare_runner(3)
    previous, _pipeline = _pipeline, pipeline
    TRACER_PROVIDER.swap(pipeline.tracer_provider)
    METER_PROVIDER.swap(pipeline.meter_provider or NoOpMeterProvider())
    log.set_logger_provider(pipeline.logger_provider)
    if previous is not None:
        previous.shutdown(keep_open={id(g.inner) for g in pipeline.exporters})


def _set_globals_once() -> None:
    global _globals_set
    if _globals_set:
        return
    _globals_set = True
    if trace.get_tracer_provider() is not TRACER_PROVIDER:
        trace.set_tracer_provider(TRACER_PROVIDER)
    if metrics.get_meter_provider() is not METER_PROVIDER:
        metrics.set_meter_provider(METER_PROVIDER)
    if not os.environ.get("OTEL_PROPAGATORS", "").strip():
        propagate.set_global_textmap(
            CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
        )
    for kind, current, ours in (
        ("tracer", trace.get_tracer_provider(), TRACER_PROVIDER),
        ("meter", metrics.get_meter_provider(), METER_PROVIDER),
    ):
        if current is not ours:
            LOGGER.warning(
                "another global %s provider was set before clue.configure(); clue's is "
                "reachable only through clue.telemetry.%s()",
                kind,
                kind,
            )


def _check_sigterm_option(handle_sigterm: bool) -> None:
    if type(handle_sigterm) is not bool:
        raise ValueError(f"handle_sigterm must be True or False, got {handle_sigterm!r}")
    if handle_sigterm and threading.current_thread() is not threading.main_thread():
        raise ValueError(
            "handle_sigterm=True needs configure() in the main thread: "
            "Python sets signal handlers there only"
        )


def _hook_sigterm() -> None:
    """Run ``_on_sigterm`` on SIGTERM, unless it already does.

    What is installed is read from the process itself, never from a flag: a
    forked worker whose server reset SIGTERM gets the hook again from its own
    ``configure(handle_sigterm=True)``.
    """
    global _previous_sigterm
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _in_sigterm_hook
    if _in_sigterm_hook:  # a handler chained after this one chains back to it
        return
    _in_sigterm_hook = True
    try:
        shutdown()
        log.sync()  # entries waiting for the write delay, even with telemetry off
        previous = _previous_sigterm
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # default action: terminate, as without clue
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        _in_sigterm_hook = False


def shutdown() -> None:
    """Flush and stop traces, metrics and logs; later spans and measurements are no-ops.

    Runs at interpreter exit, and on SIGTERM with ``configure(handle_sigterm=True)``;
    safe to call twice. It returns within ``configure(shutdown_timeout=...)`` (2 s by
    default) whatever the collectors do; with a collector already failing, it does
    not wait for it. What is left is dropped and counted in ``stats()``.
    """
    global _pipeline
    with _lock:
        pipeline, _pipeline = _pipeline, None
        if pipeline is None:
            return
        TRACER_PROVIDER.swap(NoOpTracerProvider())
        METER_PROVIDER.swap(NoOpMeterProvider())
        log.sync()  # the entries waiting to be written are exported too
        log.set_logger_provider(None)
        pipeline.shutdown(keep_open=set())


# Registered once, at import: a forked child inherits it with the rest of the process.
atexit.register(shutdown)

_INHERITED: list[Any] = []  # a forked child's copies of its parent's exporters, kept unused


def _after_fork_in_child() -> None:
    """A forked child exports through exporters of its own. The SDK renews the rest: batch
    processor threads and queues, the metric reader's thread, ``service.instance.id``."""
    global _lock
    _lock = threading.RLock()  # another thread of the parent may have held it
    if _pipeline is not None:
        _pipeline.renew_exporters()


os.register_at_fork(after_in_child=_after_fork_in_child)


def force_flush(timeout: float = 30.0) -> bool:
    """Export everything queued now (spans, metrics, log records); True if all succeeded."""
    with _lock:
        pipeline = _pipeline
    return True if pipeline is None else pipeline.force_flush(timeout)


def flush_at_stop() -> None:
    """Write the log entries waiting and export what is queued, within the shutdown bound.

    For a server stopping the app (the ASGI lifespan's shutdown): its process may
    end without exit handlers, as a uvicorn worker does, re-raising SIGTERM with
    the default action once its requests are done.
    """
    with _lock:
        pipeline = _pipeline
    log.sync()
    if pipeline is not None:
        pipeline.force_flush(pipeline.shutdown_timeout)


def stats() -> dict[str, dict[str, int]]:
    """Export counters per signal since the process started: exported, failed, dropped."""
    return {name: counters.snapshot() for name, counters in STATS.items()}


def tracer(name: str, version: str | None = None) -> trace.Tracer:
    """A tracer of clue's provider (follows every ``configure()``)."""
    return TRACER_PROVIDER.get_tracer(name, version)


def meter(name: str, version: str | None = None) -> metrics.Meter:
    """A meter of clue's provider (follows every ``configure()``)."""
    return METER_PROVIDER.get_meter(name, version)
