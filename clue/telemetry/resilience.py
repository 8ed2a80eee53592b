"""Export that never hurts the service: counted drops, failures logged once per interval.

The SDK's batch processors already keep exports off the request path and
bound their queues; this module wraps each exporter to count what is exported,
failed and dropped (``stats()``), to report failures at most once per interval
instead of once per batch, to say when export works again, and to stop
retrying at shutdown when the collector is known to be down or the shutdown
deadline has passed (``run_within``). Its reports are logged under
``clue.telemetry``, which clue.log keeps out of the OTLP log export: a report
about a failing exporter never waits on that exporter.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from clue._otel_internals import exporter_preferences, replace_drop_counter
from clue.telemetry.forked import in_child

LOGGER = logging.getLogger("clue.telemetry")


@dataclass
class SignalStats:
    """Counters of one signal since the process started (thread-safe updates)."""

    exported: int = 0  # items (spans, log records) or metric exports that reached the collector
    failed: int = 0  # items whose export failed (collector down, rejected, timed out)
    dropped: int = 0  # items thrown away because the bounded queue was full
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        in_child(self._start_over)

    def _start_over(self) -> None:
        """A forked child counts its own exports: the parent's are the parent's."""
        self._lock = threading.Lock()
        self.exported = self.failed = self.dropped = 0

    def add(self, *, exported: int = 0, failed: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self.exported += exported
            self.failed += failed
            self.dropped += dropped

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"exported": self.exported, "failed": self.failed, "dropped": self.dropped}


STATS = {signal: SignalStats() for signal in ("traces", "metrics", "logs")}


class FailureReport:
    """Logs export failures of one exporter at most once per ``interval`` seconds."""

    def __init__(
        self, signal: str, target: str, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._signal = signal
        self._target = target
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._failing = False
        self._last_report: float | None = None
        self._unreported = 0
        self._since_ok = 0
        in_child(self._start_over)

    def _start_over(self) -> None:
        """A forked child reports its own failures."""
        self._lock = threading.Lock()
        self._failing = False
        self._last_report = None
        self._unreported = self._since_ok = 0

    @property
    def failing(self) -> bool:
        """True when the last export failed."""
        return self._failing

    def failure(self, error: str) -> None:
        with self._lock:
            self._failing = True
            self._since_ok += 1
            self._unreported += 1
            now = self._clock()
            if self._last_report is not None and now - self._last_report < self._interval:
                return
            self._last_report, batches, self._unreported = now, self._unreported, 0
        LOGGER.warning(
            "exporting %s to %s failed; retrying in the background",
            self._signal,
            self._target,
            extra={"failed_batches": batches, "error": error, "next_report_in_s": self._interval},
        )

    def success(self) -> None:
        if not self._failing:
            return
        with self._lock:
            if not self._failing:
                return
            self._failing, failed, self._since_ok = False, self._since_ok, 0
            self._unreported = 0
            self._last_report = None
        LOGGER.info(
            "exporting %s to %s works again",
            self._signal,
            self._target,
            extra={"failed_batches": failed},
        )


class _Guard:
    """What the three exporter wrappers share: counting, reporting, abandoning, closing."""

    def __init__(self, signal: str, report: FailureReport) -> None:
        self.stats = STATS[signal]
        self.report = report
        self._abandoned = False
        self._cut = False
        self._in_flight = 0  # items handed to the exporter, not yet counted
        self._count_lock = threading.Lock()
        self._closed = False
        self._close_lock = threading.Lock()
        self.keep_open = False  # the wrapped exporter is reused: do not shut it down
        in_child(self._start_over)

    def _start_over(self) -> None:
        """A forked child has no batch under way; an export thread of the parent may have
        held a lock."""
        self._count_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._in_flight = 0

    def abandon(self) -> None:
        """Fail every later batch at once (shutdown with the collector down)."""
        self._abandoned = True

    def cut(self) -> None:
        """Abandon, and count the batches under way as dropped now: their export is
        stopped, or left to end in the background, uncounted and unreported."""
        with self._count_lock:
            self._abandoned = self._cut = True
            self.stats.add(dropped=self._in_flight)
            self._in_flight = 0

    def close(self, shutdown_inner: Callable[[], object]) -> None:
        """Shut the wrapped exporter down once, unless the next set-up reuses it.

        Called by the SDK at the end of a shutdown, and by ``cut()`` from another thread
        when the deadline passes first: the second call does nothing.
        """
        with self._close_lock:
            if self.keep_open or self._closed:
                return
            self._closed = True
        try:
            shutdown_inner()
        except Exception:  # reported; the other exporters still shut down
            LOGGER.exception("an exporter failed to shut down")

    def run(self, items: int, export: Callable[[], bool]) -> bool:
        with self._count_lock:
            if self._abandoned:
                self.stats.add(dropped=items)
                return False
            self._in_flight += items
        try:
            ok = export()
            error = "the exporter reported a failure"
        except Exception as exc:  # an exporter bug must not kill the batch thread
            ok, error = False, f"{type(exc).__name__}: {exc}"
        with self._count_lock:
            if self._cut:  # counted as dropped by cut()
                return False
            self._in_flight -= items
            if ok:
                self.stats.add(exported=items)
            else:
                self.stats.add(failed=items)
        if ok:
            self.report.success()
        else:
            self.report.failure(error)
        return ok


class GuardedSpanExporter(SpanExporter):
    """A span exporter wrapper that counts and reports (see module docstring)."""

    def __init__(self, inner: SpanExporter, report: FailureReport) -> None:
        self.inner = inner
        self.guard = _Guard("traces", report)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.guard.run(
            len(spans), lambda: self.inner.export(spans) == SpanExportResult.SUCCESS
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.guard.close(self.inner.shutdown)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class GuardedLogExporter(LogRecordExporter):
    """A log record exporter wrapper that counts and reports (see module docstring)."""

    def __init__(self, inner: LogRecordExporter, report: FailureReport) -> None:
        self.inner = inner
        self.guard = _Guard("logs", report)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = self.guard.run(
            len(batch), lambda: self.inner.export(batch) == LogRecordExportResult.SUCCESS
        )
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.guard.close(self.inner.shutdown)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class GuardedMetricExporter(MetricExporter):
    """A metric exporter wrapper that counts and reports (see module docstring)."""

    def __init__(self, inner: MetricExporter, report: FailureReport) -> None:
        temporality, aggregation = exporter_preferences(inner)
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        self.inner = inner
        self.guard = _Guard("metrics", report)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        ok = self.guard.run(
            1,
            lambda: (
                self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
                == MetricExportResult.SUCCESS
            ),
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.guard.close(lambda: self.inner.shutdown(timeout_millis=timeout_millis, **kwargs))


def cut(guarded: GuardedSpanExporter | GuardedMetricExporter | GuardedLogExporter) -> None:
    """Stop an exporter that is out of time: batches under way and later ones are dropped
    (and counted), and
    the wrapped exporter is shut down, which ends a gRPC export under way and a retry's
    wait; an HTTP request under way ends with its own timeout, in a daemon thread."""
    guarded.guard.cut()
    guarded.shutdown()


_Task = tuple[str, Callable[[], object], threading.Event]  # name, step, set when done


class _Runner:
    """Daemon threads that run ``run_within``'s steps, started before they are needed.

    Python 3.12 and later refuse to start a thread once the interpreter is finalizing,
    which is when ``atexit`` handlers run, but threads started earlier still run then.
    So the workers are started by ``prepare()`` (at ``configure()``, and again in a
    forked child, which has no thread but its own), wait on a queue at no cost, and
    after every run the ones left behind with a step still running are replaced while
    threads can still be started.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        self._free = 0  # idle workers minus the tasks queued for them
        self._wanted = 0  # idle workers to keep, the largest ``prepare()`` asked for

    def prepare(self, count: int) -> None:
        """Keep at least ``count`` idle workers from now on."""
        with self._lock:
            self._wanted = max(self._wanted, count)
        self._start_missing(self._wanted)

    def run(self, steps: Mapping[str, Callable[[], object]], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._start_missing(len(steps))
        done = []
        for name, step in steps.items():
            finished = threading.Event()
            with self._lock:
                self._free -= 1
            self._tasks.put((name, step, finished))
            done.append(finished)
        ok = all([event.wait(max(0.0, deadline - time.monotonic())) for event in done])
        self._start_missing(self._wanted)
        return ok

    def after_fork_in_child(self) -> None:
        """The child has none of the parent's workers, and maybe a lock held by one."""
        self._lock = threading.Lock()
        self._tasks = queue.SimpleQueue()
        self._free = 0
        self._start_missing(self._wanted)

    def _start_missing(self, count: int) -> None:
        """Start workers until ``count`` are free; at interpreter shutdown none can be,
        and the steps queue for the workers there are, within their deadline."""
        with self._lock:
            while self._free < count:
                worker = threading.Thread(target=self._work, name="clue-telemetry-runner")
                worker.daemon = True  # a step left behind never holds the exit
                try:
                    worker.start()
                except RuntimeError:  # "can't create new thread at interpreter shutdown"
                    return
                self._free += 1

    def _work(self) -> None:
        while True:
            name, step, finished = self._tasks.get()
            _quietly(name, step)
            finished.set()
            with self._lock:
                self._free += 1


_RUNNER = _Runner()
in_child(_RUNNER.after_fork_in_child)


def prepare_runner(count: int) -> None:
    """Start ``count`` idle daemon threads for ``run_within`` now, while Python still
    starts threads: at exit (``atexit``) Python 3.12 and later no longer do."""
    _RUNNER.prepare(count)


def run_within(steps: Mapping[str, Callable[[], object]], timeout: float) -> bool:
    """Run ``steps`` (name: function) side by side, each in a daemon thread, and wait for
    them until ``timeout`` seconds have passed in all; True if every one finished.

    One deadline for all of them, never the sum of theirs; a step still running
    at the deadline is left behind, and cannot keep the process from exiting. The
    threads are those of ``prepare_runner()``, plus any missing that can still be started.
    """
    return _RUNNER.run(steps, timeout)


def _quietly(name: str, step: Callable[[], object]) -> None:
    try:
        step()
    except Exception:  # reported, never raised into shutdown()
        LOGGER.exception("a telemetry provider failed to shut down or flush", extra={"step": name})


class _DropCounter:
    """Receives the SDK batch processor's queue bookkeeping: counts and reports drops."""

    def __init__(self, signal: str, interval: float) -> None:
        self._signal = signal
        self._stats = STATS[signal]
        self._interval = interval
        self._lock = threading.Lock()
        self._last_report: float | None = None
        self._unreported = 0
        in_child(self._start_over)

    def _start_over(self) -> None:
        """A forked child reports its own drops."""
        self._lock = threading.Lock()
        self._last_report = None
        self._unreported = 0

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        """Unused: the queue size is not reported."""

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        self._stats.add(dropped=count)
        now = time.monotonic()
        with self._lock:
            self._unreported += count
            if self._last_report is not None and now - self._last_report < self._interval:
                return
            self._last_report, dropped, self._unreported = now, self._unreported, 0
        LOGGER.warning(
            "the %s export queue is full: dropping the oldest",
            self._signal,
            extra={"dropped": dropped, "reason": error_type, "next_report_in_s": self._interval},
        )

    def finish_items(self, count: int, error: Exception | None = None) -> None:
        """Unused: exported items are counted by the exporter wrapper (SDK 1.43 passes an error)."""


def count_drops(processor: Any, signal: str, interval: float) -> bool:
    """Count the queue-full drops of an SDK batch processor in ``stats()[signal]`` and
    report them at most once per ``interval`` seconds.

    The SDK reports drops to a bookkeeping object of its batch processor; this
    replaces it with a counter. Returns False if this SDK version has no such hook.
    """
    return replace_drop_counter(processor, _DropCounter(signal, interval))
