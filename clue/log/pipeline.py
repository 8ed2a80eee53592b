"""The write path: raw entries become event dicts, lines on every output and OTLP records.

With a write delay (``STATE.write_delay``, 0 by default: each entry is
written by its call), entries below error wait up to that many seconds, at
most ``BATCH`` of them, and are then written together: one write per output, by
the call that fills the batch, by a writer thread when the delay is over, or
first thing when an error is written, ``sync()`` is called, logging is
reconfigured or the process exits. Inside a busy server, rendering a line in
the middle of a request costs several times what it costs among a batch of
lines, and every write is a system call.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry._logs import Logger
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

from clue._otel_internals import ids_of, span_context_in
from clue.log import otlp
from clue.log.output import Output
from clue.log.renderers import Renderer, format_from_env, render_json
from clue.log.sanitize import clean_event, to_text
from clue.log.state import ERROR, LEVEL_NAMES, STATE, Entry


class _Writing(threading.local):
    depth = 0  # nesting of write() calls in this thread


_writing = _Writing()
BATCH = 256  # entries written together at the latest, whatever the delay
_pending: list[Entry] = []  # waiting for the delay; appended to without the lock
_lock = threading.RLock()  # one writer at a time: batches are written in order
_writer: threading.Thread | None = None
_wake = threading.Event()  # set when the delay changes: the writer starts a new wait


def _describe(exc: BaseException, with_traceback: bool) -> dict[str, str]:
    """``error`` (message), ``error_type`` (class, module-qualified unless built in) and
    optionally ``traceback`` of ``exc``; never raises."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    described = {"error": to_text(exc), "error_type": name}
    if with_traceback:
        try:
            described["traceback"] = "".join(traceback.format_exception(exc)).rstrip()
        except Exception as failure:
            described["traceback"] = f"<traceback unavailable: {to_text(failure)}>"
    return described


def event_of(entry: Entry) -> dict[str, Any]:
    """The sanitized event dict of ``entry``: time, level, msg, fields, kv, error, ids, file.

    The trace ids and ``file`` are clue's own values, added once the rest is sanitized.
    """
    computed = STATE.computed
    if computed:
        event = _with_computed(entry, computed)
    else:
        event = {
            "time": STATE.format_time(entry.time_ns),
            "level": LEVEL_NAMES[entry.level],
            "msg": entry.msg,
            **entry.fields,
            **entry.kv,
        }
        if len(event) != 3 + len(entry.fields) + len(entry.kv):  # a name met twice
            _keep_own(event, entry)
    exc = entry.exc
    if exc is not None:
        event.update(_describe(exc, entry.with_traceback))
    clean_event(event, STATE.sensitive_keys, STATE.max_value_size)
    otel_context = entry.otel_context
    if otel_context:  # an empty OpenTelemetry context holds no span
        ids = _trace_ids(span_context_in(otel_context))
        if ids is not None:
            event["trace_id"], event["span_id"] = ids
    file_line = entry.file_line
    if file_line is not None:
        event["file"] = file_line
    return event


def _with_computed(
    entry: Entry, computed: Iterable[Callable[[], Mapping[str, Any]]]
) -> dict[str, Any]:
    """The event of ``entry`` with the fields of ``computed`` under its own (which win); a
    failing callable is named in ``field_error``, and the entry is written all the same."""
    event: dict[str, Any] = {
        "time": STATE.format_time(entry.time_ns),
        "level": LEVEL_NAMES[entry.level],
        "msg": entry.msg,
    }
    for compute in computed:
        try:
            event.update(compute())
        except Exception as exc:
            name = getattr(compute, "__qualname__", type(compute).__name__)
            event["field_error"] = f"{name}: {type(exc).__name__}: {to_text(exc)}"
    event.update(entry.fields)
    event.update(entry.kv)
    _keep_own(event, entry)
    return event


_OWN = ("time", "level", "msg")


def _keep_own(event: dict[str, Any], entry: Entry) -> None:
    """Put the entry's own time, level and message back where a field of the same name
    replaced them, the field's value kept beside them as ``time_``, ``level_``, ``msg_``."""
    for key in _OWN:
        if key in entry.kv or key in entry.fields:
            event[f"{key}_"] = event[key]
    if "time_" in event:
        event["time"] = STATE.format_time(entry.time_ns)
    if "level_" in event:
        event["level"] = LEVEL_NAMES[entry.level]
    if "msg_" in event:
        event["msg"] = entry.msg


_last_ids: tuple[SpanContext | None, tuple[str, str] | None] = (None, None)


def _trace_ids(span_context: SpanContext) -> tuple[str, str] | None:
    """The hex trace and span ids of a valid span context (the last one's are remembered:
    the entries of one span ask for the same ids)."""
    global _last_ids
    last, ids = _last_ids
    if span_context is last:
        return ids
    found = ids_of(span_context)
    ids = None if found is None else (found[0].to_bytes(16).hex(), found[1].to_bytes(8).hex())
    _last_ids = (span_context, ids)
    return ids


def outputs() -> tuple[Output, ...]:
    """The configured outputs (the default one if ``configure`` was never called).

    Without ``configure()`` there is no start-up step to fail, so a bad
    ``CLUE_LOG_FORMAT`` is reported by an error entry instead of an exception.
    """
    current = STATE.outputs
    if current is None:
        try:
            fmt, problem = format_from_env(), None
        except ValueError as exc:
            fmt, problem = None, str(exc)
        current = STATE.outputs = (Output(None).resolved(fmt),)
        if problem is not None:
            write_entry(
                Entry((ERROR, problem, {}, time.time_ns(), {}, Context(), None, None, False))
            )
    return current


def _line(render: Renderer, level: str, event: dict[str, Any]) -> str:
    try:
        line = render(None, level, event)
        if type(line) is not str:
            line = line.decode() if isinstance(line, bytes) else str(line)
    except Exception as exc:  # a broken custom renderer must not lose the entry
        failed = {**event, "render_error": f"{type(exc).__name__}: {to_text(exc)}"}
        line = render_json(None, level, failed)
    return line + "\n"


def write_entry(entry: Entry) -> None:
    """Write one entry: after the write delay, or now (with the waiting ones first) when it
    is an error, the delay is 0 or this thread is writing already (see :func:`write`)."""
    depth = _writing.depth
    if entry.level < ERROR and STATE.write_delay and not depth:
        _pending.append(entry)
        if len(_pending) >= BATCH:
            write(())
        elif _writer is None:
            _start_writer()
    elif _pending and not depth:
        write((entry,))
    elif depth < 2:
        event = event_of(entry)
        if _writer is None:  # no batch was ever written: nothing to keep in order with
            _emit(((entry, event),), depth)
        else:
            with _lock:
                _emit(((entry, event),), depth)


def write(entries: Iterable[Entry]) -> None:
    """Render the waiting entries then ``entries`` on every output, in order and in one
    write each, and export them over OTLP.

    An entry logged while this thread is writing (by a renderer, a stream or
    the OpenTelemetry SDK, through the stdlib bridge) is written but not
    exported; one logged while writing that one is dropped: no loops.
    """
    depth = _writing.depth
    if depth > 1:
        return
    with _lock:
        if depth == 0 and _pending:
            waiting = _pending[:]  # appends made meanwhile stay for the next batch
            del _pending[: len(waiting)]
            entries = [*waiting, *entries]
        events = [(entry, event_of(entry)) for entry in entries]
        if events:
            _emit(events, depth)


def _emit(events: Sequence[tuple[Entry, dict[str, Any]]], depth: int) -> None:
    """Write rendered ``events`` on every output and export them (the lock is held)."""
    _writing.depth = depth + 1
    try:
        for output in outputs():
            render: Renderer = output.render  # type: ignore[assignment]
            if len(events) == 1:  # the common case, without a list
                entry, event = events[0]
                output.write(_line(render, LEVEL_NAMES[entry.level], event))
            else:
                output.write(
                    "".join([_line(render, LEVEL_NAMES[e.level], event) for e, event in events])
                )
        logger = STATE.otel_logger
        if logger is not None and depth == 0:
            for entry, event in events:
                _export(logger, entry, event)
    finally:
        _writing.depth = depth


def sync() -> None:
    """Write the entries waiting for the write delay now."""
    write(())


def _start_writer() -> None:
    global _writer
    with _lock:
        if _writer is None:
            _writer = threading.Thread(target=_write_late, name="clue-log-writer", daemon=True)
            _writer.start()


def set_write_delay(seconds: float) -> None:
    """Let entries below error wait up to ``seconds`` (0: write each at once)."""
    STATE.write_delay = seconds
    _wake.set()


def _write_late() -> None:
    """The writer thread: every write delay, write what is waiting."""
    while True:
        _wake.clear()  # a change of delay before this wait is read by it
        _wake.wait(STATE.write_delay or 0.1)
        if _pending:
            with contextlib.suppress(Exception):  # a failing export must not end the thread
                write(())


def _after_fork_in_child() -> None:
    """A forked child starts without the writer thread and the parent's waiting entries."""
    global _lock, _wake, _writer
    _lock = threading.RLock()
    _wake = threading.Event()
    _writer = None
    del _pending[:]


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(sync)


def _export(logger: Logger, entry: Entry, event: dict[str, Any]) -> None:
    if not str(entry.kv.get("logger", "")).startswith("opentelemetry"):
        otlp.emit(logger, entry, event)  # the SDK's own records are not fed back
