"""Property tests: no value crashes a format; logfmt quoting is reversible; JSON lines are the
same with orjson and without."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clue import log
from clue.log import renderers
from clue.log.pipeline import event_of
from clue.log.renderers import render_json, render_logfmt, renderer_for
from clue.log.state import INFO, Entry
from clue.testing import reset
from tests.test_log_formats import parse_logfmt


class Weird:
    """An object whose str() fails."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.just(Weird())
    | st.datetimes()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.text(min_size=1, max_size=12)


def _entry(msg: str, kv: dict[str, Any]) -> Entry:
    from opentelemetry.context import get_current

    return Entry((INFO, msg, kv, 1_700_000_000_123_456_789, {}, get_current(), None, None, False))


@settings(max_examples=150, deadline=None)
@given(msg=st.text(), kv=st.dictionaries(keys, values, max_size=5))
def test_arbitrary_values_never_crash_a_format(msg: str, kv: dict[str, Any]) -> None:
    event = event_of(_entry(msg, kv))
    for fmt in ("json", "logfmt", "terminal"):
        line = renderer_for(fmt)(None, "info", event)
        assert isinstance(line, str)
    decoded = json.loads(render_json(None, "info", event))
    assert decoded["msg"] == event["msg"]


@settings(max_examples=50, deadline=None)
@given(msg=st.text(), kv=st.dictionaries(keys, values, max_size=3))
def test_arbitrary_values_are_written_through_the_public_api(msg: str, kv: dict[str, Any]) -> None:
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, "json"), log.Output(stream, "logfmt")], stdlib=False)
    try:
        log.info(msg, **kv)
    finally:
        reset()
    as_json, as_logfmt = stream.getvalue().splitlines()  # one line each, whatever the text
    assert json.loads(as_json)["level"] == "info"
    assert parse_logfmt(as_logfmt)["level"] == "info"


identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(identifiers, st.text(max_size=40), max_size=6))
def test_logfmt_quoting_is_reversible(pairs: dict[str, str]) -> None:
    line = render_logfmt(None, "info", pairs)
    assert "\n" not in line
    assert parse_logfmt(line) == pairs if pairs else line == ""


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_logfmt_keys_never_break_the_line(key: str) -> None:
    line = render_logfmt(None, "info", {key: "v", "next": "w"})
    parsed = parse_logfmt(line)
    assert list(parsed.values()) == ["v", "w"]


@contextlib.contextmanager
def without_orjson() -> Iterator[None]:
    """The JSON renderer as it runs when the fast extra (orjson) is not installed."""
    saved = renderers._orjson_dumps
    renderers._orjson_dumps = None
    try:
        yield
    finally:
        renderers._orjson_dumps = saved


def test_orjson_is_installed_for_the_tests() -> None:
    assert renderers._orjson_dumps is not None


@settings(max_examples=200, deadline=None)
@given(msg=st.text(), kv=st.dictionaries(keys, values, max_size=5))
def test_json_lines_say_the_same_with_and_without_orjson(msg: str, kv: dict[str, Any]) -> None:
    event = event_of(_entry(msg, kv))
    fast = render_json(None, "info", event)
    with without_orjson():
        plain = render_json(None, "info", event)
    for line in (fast, plain):
        assert "\n" not in line and "\u2028" not in line and "\x85" not in line
    assert json.loads(fast) == json.loads(plain)


def test_a_field_named_like_the_entrys_own_keys_is_kept_beside_them() -> None:
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, "json")], stdlib=False)
    try:
        with log.context(level="from the context"):
            log.info("hello", time=3, msg=None)
    finally:
        reset()
    entry = json.loads(stream.getvalue())
    assert (entry["level"], entry["msg"]) == ("info", "hello") and entry["time"].endswith("Z")
    assert (entry["level_"], entry["msg_"], entry["time_"]) == ("from the context", None, 3)
