"""write_delay: entries below error wait, then are written together, in order, never lost."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from clue import log
from clue.log.pipeline import BATCH

LONG = 30.0  # longer than any test: only the other triggers write


class CountingStream(io.StringIO):
    """A text stream counting its write() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def messages(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingStream]:
    """clue.log writing JSON into memory with a long write delay."""
    monkeypatch.delenv("CLUE_LOG_WRITE_DELAY", raising=False)
    captured = CountingStream()
    log.configure(outputs=[log.Output(captured, format="json")], write_delay=LONG)
    yield captured
    log.configure()


def test_entries_wait_then_are_written_in_one_write(stream: CountingStream) -> None:
    log.info("one")
    log.warn("two")
    log.print("three")
    assert stream.getvalue() == ""
    log.sync()
    assert messages(stream) == ["one", "two", "three"]
    assert stream.writes == 1


def test_an_error_writes_the_waiting_entries_first(stream: CountingStream) -> None:
    log.info("before")
    log.error("failed", exc=ValueError("bad"))
    assert messages(stream) == ["before", "failed"]


def test_a_stdlib_error_record_writes_the_waiting_entries_first(stream: CountingStream) -> None:
    log.info("before")
    logging.getLogger("app").error("stdlib failure")
    assert messages(stream) == ["before", "stdlib failure"]


def test_a_full_batch_is_written_by_the_call_that_fills_it(stream: CountingStream) -> None:
    for n in range(BATCH):
        log.info("entry", n=n)
    assert len(messages(stream)) == BATCH
    log.info("next")
    assert len(messages(stream)) == BATCH
    log.sync()
    assert messages(stream)[-1] == "next"


def test_a_request_flush_writes_the_waiting_entries_first(stream: CountingStream) -> None:
    log.print("request started")
    with log.request_scope(request_id="r-1"):
        log.info("buffered")
        log.flush()
    assert messages(stream) == ["request started", "buffered"]


def test_entries_of_several_threads_are_all_written_in_each_threads_order(
    stream: CountingStream,
) -> None:
    def run(name: str) -> None:
        for n in range(300):
            log.info(name, n=n)

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.sync()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    for i in range(4):
        assert [e["n"] for e in entries if e["msg"] == f"t{i}"] == list(range(300))


def test_the_writer_thread_writes_once_the_delay_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUE_LOG_WRITE_DELAY", raising=False)
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, format="json")], write_delay=0.05)
    try:
        log.info("late but written")
        deadline = time.monotonic() + 5
        while "late but written" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert messages(stream) == ["late but written"]
        assert any(t.name == "clue-log-writer" and t.daemon for t in threading.enumerate())
    finally:
        log.configure()


def test_reconfiguring_writes_the_waiting_entries_where_they_were_logged(
    stream: CountingStream,
) -> None:
    log.info("old set-up")
    other = io.StringIO()
    log.configure(outputs=[log.Output(other, format="json")])
    log.info("new set-up")
    assert messages(stream) == ["old set-up"]
    assert messages(other) == ["new set-up"]


def test_waiting_entries_are_exported_when_written(stream: CountingStream) -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log.set_logger_provider(provider)
    try:
        log.info("exported late")
        assert exporter.get_finished_logs() == ()
        log.sync()
        (record,) = exporter.get_finished_logs()
        assert record.log_record.body == "exported late"
    finally:
        log.set_logger_provider(None)
        provider.shutdown()


def test_records_logged_while_rendering_do_not_loop(stream: CountingStream) -> None:
    def noisy(_logger: object, _method: str, event: dict[str, object]) -> str:
        logging.getLogger("renderer").warning("rendering %s", event["msg"])
        return str(event["msg"])

    rendered = io.StringIO()
    log.configure(outputs=[log.Output(rendered, noisy)], write_delay=LONG)
    log.warn("hello")
    log.sync()
    # the renderer's own record is written at once; the one it logs while rendering that is not
    assert rendered.getvalue() == "rendering hello\nhello\n"


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CLUE_LOG_FORMAT": "json", **env},
        check=True,
    )


def test_waiting_entries_are_written_at_exit() -> None:
    done = _python(
        "from clue import log\n"
        "log.configure(write_delay=30)\n"
        "log.info('bye')\n"
        "print('printed after', flush=True)\n"
    )
    assert done.stdout.splitlines()[0] == "printed after"
    assert json.loads(done.stdout.splitlines()[1])["msg"] == "bye"


def test_the_variable_applies_without_configure() -> None:
    done = _python(
        "from clue import log\nlog.info('waited')\nprint('printed after', flush=True)\n",
        CLUE_LOG_WRITE_DELAY="30",
    )
    first, second = done.stdout.splitlines()
    assert (first, json.loads(second)["msg"]) == ("printed after", "waited")


def test_the_variable_overrides_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUE_LOG_WRITE_DELAY", "0")
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, format="json")], write_delay=LONG)
    try:
        log.info("at once")
        assert messages(stream) == ["at once"]
    finally:
        monkeypatch.delenv("CLUE_LOG_WRITE_DELAY")
        log.configure()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_write_its_parents_waiting_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLUE_LOG_WRITE_DELAY", raising=False)
    path = tmp_path / "log.jsonl"
    with path.open("w") as file:
        log.configure(outputs=[log.Output(file, format="json")], write_delay=LONG)
        try:
            log.info("parent")
            pid = os.fork()
            if pid == 0:  # the child: write its own entry only, then leave at once
                log.info("child")
                log.sync()
                os._exit(0)
            os.waitpid(pid, 0)
            log.sync()
        finally:
            log.configure()
    lines = [json.loads(line)["msg"] for line in path.read_text().splitlines()]
    assert sorted(lines) == ["child", "parent"]


@pytest.mark.parametrize("bad", [-1, 61, float("nan"), "0.1", True, None])
def test_a_bad_write_delay_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="write_delay must be a number of seconds from 0 to 60"):
        log.configure(write_delay=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["soon", "-0.5", "120", "nan"])
def test_a_bad_write_delay_variable_is_refused_at_configure(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUE_LOG_WRITE_DELAY", bad)
    with pytest.raises(ValueError, match=f"CLUE_LOG_WRITE_DELAY='{bad}' is not a number"):
        log.configure()


def test_a_refused_configure_changes_nothing(stream: CountingStream) -> None:
    log.info("kept")
    with pytest.raises(ValueError, match="write_delay"):
        log.configure(outputs=[log.Output(io.StringIO())], write_delay=-1)
    log.info("still here")
    assert stream.getvalue() == ""
    log.sync()
    assert messages(stream) == ["kept", "still here"]
