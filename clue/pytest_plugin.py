"""The fixtures of `clue.testing`, offered to every pytest run by clue's ``pytest11`` entry
point. A fixture changes nothing until a test asks for it: suites that use none of them run
as without the plugin (which only imports clue, as the service under test does).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clue import testing


def _reset_first(request: pytest.FixtureRequest) -> None:
    """Set ``clue_reset`` up before a capture when the test asks for both, whatever their
    order: a reset after the capture started would end it."""
    if "clue_reset" in request.fixturenames:
        request.getfixturevalue("clue_reset")


@pytest.fixture
def clue_logs(request: pytest.FixtureRequest) -> Iterator[testing.CapturedLogs]:
    """What clue.log writes during the test (`clue.testing.capture_logs`)."""
    _reset_first(request)
    with testing.capture_logs() as logs:
        yield logs


@pytest.fixture
def clue_spans(request: pytest.FixtureRequest) -> Iterator[testing.CapturedSpans]:
    """The spans ended during the test, every new trace sampled (`clue.testing.capture_spans`)."""
    _reset_first(request)
    with testing.capture_spans() as spans:
        yield spans


@pytest.fixture
def clue_metrics(request: pytest.FixtureRequest) -> Iterator[testing.CapturedMetrics]:
    """The measurements of the test (`clue.testing.capture_metrics`)."""
    _reset_first(request)
    with testing.capture_metrics() as captured:
        yield captured


@pytest.fixture
def clue_reset() -> Iterator[None]:
    """clue as in a fresh process before and after the test (`clue.testing.reset`); set up
    before the captures of the same test."""
    testing.reset()
    yield
    testing.reset()
