"""structlog loggers routed into clue.log by ``log.structlog_processor``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from clue import log
from tests.test_log_fixtures import Captured, captured

__all__ = ["captured"]


@pytest.fixture
def slog(captured: Captured) -> Iterator[structlog.typing.FilteringBoundLogger]:
    structlog.configure(
        processors=[structlog.processors.add_log_level, log.structlog_processor],
        cache_logger_on_first_use=False,
    )
    yield structlog.get_logger().bind(service="cart")
    structlog.reset_defaults()


def test_structlog_events_become_clue_entries(
    slog: structlog.typing.FilteringBoundLogger, captured: Captured
) -> None:
    with log.context(request_id="r1"):
        slog.warning("low stock", sku="s-1", password="p")
    (entry,) = captured.entries()
    assert (entry["level"], entry["msg"], entry["sku"]) == ("warn", "low stock", "s-1")
    assert (entry["service"], entry["request_id"], entry["password"]) == (
        "cart",
        "r1",
        "[REDACTED]",
    )


def test_structlog_events_are_buffered_and_flushed_like_info(
    slog: structlog.typing.FilteringBoundLogger, captured: Captured
) -> None:
    with log.request_scope():
        slog.info("dropped with the buffer")
    with log.request_scope():
        slog.info("kept")
        try:
            raise LookupError("no cart")
        except LookupError:
            slog.exception("failed")
    kept, failed = captured.entries()
    assert kept["msg"] == "kept"
    assert (failed["level"], failed["error_type"]) == ("error", "LookupError")
    assert "no cart" in failed["traceback"]


def test_structlog_debug_follows_the_debug_state(
    slog: structlog.typing.FilteringBoundLogger, captured: Captured
) -> None:
    slog.debug("hidden")
    log.set_debug(True)
    slog.debug("shown")
    log.set_debug(False)
    assert captured.msgs() == ["shown"]
