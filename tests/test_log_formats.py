"""Formats, outputs, truncation, file:line, redaction and configuration errors of clue.log."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from clue import log
from clue.testing import reset
from tests.test_log_fixtures import Captured, captured

__all__ = ["captured"]

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_logfmt(line: str) -> dict[str, str]:
    """A small logfmt parser: bare values run to the next space, quoted ones are JSON strings."""
    out: dict[str, str] = {}
    i = 0
    while i < len(line):
        eq = line.index("=", i)
        key = line[i:eq]
        i = eq + 1
        if line.startswith('"', i):
            value, end = json.JSONDecoder().raw_decode(line, i)
            i = end
        else:
            end = line.find(" ", i)
            end = len(line) if end == -1 else end
            value, i = line[i:end], end
        out[key] = value
        assert i == len(line) or line[i] == " ", f"garbage after {key!r} in {line!r}"
        i += 1
    return out


def write_one(fmt: str | log.Renderer, **kv: Any) -> str:
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, fmt)], stdlib=False)
    try:
        with log.context(user="ana"):
            log.info("hello world", **kv)
    finally:
        reset()
    return stream.getvalue()


def test_json_is_one_object_per_line() -> None:
    text = write_one("json", items=3, ratio=0.5, ok=True, none=None, tags=["a", "b"])
    assert text.endswith("\n") and text.count("\n") == 1
    entry = json.loads(text)
    assert list(entry)[:3] == ["time", "level", "msg"]
    assert entry | {"time": None} == {
        "time": None,
        "level": "info",
        "msg": "hello world",
        "user": "ana",
        "items": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "tags": ["a", "b"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["time"])


def test_logfmt_pairs_and_quoting() -> None:
    text = write_one("logfmt", note='say "hi"\nbye', path="/a=b", n=2, ok=False, d={"k": 1})
    assert text.count("\n") == 1
    pairs = parse_logfmt(text.rstrip("\n"))
    assert text.startswith("time=")
    assert pairs["level"] == "info" and pairs["msg"] == "hello world" and pairs["user"] == "ana"
    assert pairs["note"] == 'say "hi"\nbye' and pairs["path"] == "/a=b"
    assert (pairs["n"], pairs["ok"], json.loads(pairs["d"])) == ("2", "false", {"k": 1})


def test_terminal_is_coloured_and_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    text = write_one("terminal", items=3)
    assert "\x1b[" in text
    plain = ANSI.sub("", text)
    assert re.match(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z \[info\s*\] hello world\s+user=ana items=3\n$", plain
    )


def test_terminal_without_colours_when_no_color_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    text = write_one("terminal", items=3)
    assert "\x1b[" not in text and "hello world" in text and "items=3" in text


@pytest.mark.parametrize("level", [None, ["a", "list"], 3])
def test_terminal_keeps_a_field_named_level_beside_the_entrys_own(
    monkeypatch: pytest.MonkeyPatch, level: Any
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    text = write_one("terminal", level=level)
    assert "[info" in text and f"level_={level!s}" in text
    assert "hello world" in text and "render_error" not in text


def test_terminal_prints_tracebacks_below_the_line(captured: Captured) -> None:
    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, "terminal")], stdlib=False)
    try:
        raise OSError("disk full")
    except OSError as exc:
        log.error("save failed", exc, traceback=True)
    first, *rest = ANSI.sub("", stream.getvalue()).splitlines()
    assert "save failed" in first and "error_type=OSError" in first
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "OSError: disk full"


def test_custom_renderers_including_structlog_ones() -> None:
    text = write_one(lambda _l, method, ev: f"{method.upper()} {ev['msg']} user={ev['user']}")
    assert text == "INFO hello world user=ana\n"
    kv = write_one(structlog.processors.KeyValueRenderer(key_order=["msg", "user"]))
    assert kv.startswith("msg='hello world' user='ana' ")


def test_several_outputs_each_with_its_format() -> None:
    as_json, as_logfmt = io.StringIO(), io.StringIO()
    log.configure(outputs=[log.Output(as_json, "json"), log.Output(as_logfmt, "logfmt")])
    try:
        log.info("twice", n=1)
    finally:
        reset()
    assert json.loads(as_json.getvalue())["n"] == 1
    assert parse_logfmt(as_logfmt.getvalue().strip())["n"] == "1"


def test_configure_twice_does_not_double_outputs() -> None:
    stream = io.StringIO()
    try:
        for _ in range(3):
            log.configure(outputs=[log.Output(stream, "json")])
        log.info("once")
    finally:
        reset()
    assert stream.getvalue().count("\n") == 1


def test_long_values_are_truncated_with_a_marker(captured: Captured) -> None:
    log.configure(outputs=[log.Output(captured.stream, "json")], max_value_size=10, stdlib=False)
    log.info("x" * 30, body="y" * 25, short="fits", nested={"deep": "z" * 11}, obj=range(1000))
    entry = captured.entries()[0]
    assert entry["msg"] == "x" * 10 + "…[truncated 20 chars]"
    assert entry["body"] == "y" * 10 + "…[truncated 15 chars]"
    assert entry["short"] == "fits"
    assert entry["nested"] == {"deep": "z" * 10 + "…[truncated 1 chars]"}
    assert entry["obj"] == "range(0, 1000)"[:10] + "…[truncated 4 chars]"


def test_file_line_is_the_callers(captured: Captured) -> None:
    log.configure(outputs=[log.Output(captured.stream, "json")], file_line=True, stdlib=False)
    line = sys._getframe().f_lineno + 1
    log.info("here")
    log.print("there")
    with log.request_scope():
        log.warn("buffered")
        log.error("failed")
    here, there, buffered, failed = captured.entries()
    assert here["file"] == f"test_log_formats.py:{line}"
    assert there["file"] == f"test_log_formats.py:{line + 1}"
    assert buffered["file"] == f"test_log_formats.py:{line + 3}"
    assert failed["file"] == f"test_log_formats.py:{line + 4}"


SECRETS = {
    "password": "hunter2",
    "Authorization": "Bearer abc",
    "COOKIE": "sid=1",
    "credit_card_number": "4111111111111111",
    "api_key": "k-123",
}


@pytest.mark.parametrize("fmt", ["json", "logfmt", "terminal"])
def test_sensitive_keys_are_masked_in_every_format(fmt: str) -> None:
    text = write_one(fmt, **SECRETS, payload={"user": {"Token": "t-1", "name": "ana"}})
    for secret in ["hunter2", "Bearer abc", "sid=1", "4111111111111111", "k-123", "t-1"]:
        assert secret not in text
    assert text.count("[REDACTED]") == 6
    assert "ana" in text


def test_sensitive_keys_are_configurable(captured: Captured) -> None:
    keys = log.DEFAULT_SENSITIVE_KEYS | {"SSN"}
    log.configure(outputs=[log.Output(captured.stream)], sensitive_keys=keys, stdlib=False)
    log.info("user", ssn="123", password="p", name="ana")
    entry = captured.entries()[0]
    assert (entry["ssn"], entry["password"], entry["name"]) == ("[REDACTED]", "[REDACTED]", "ana")
    log.configure(outputs=[log.Output(captured.stream)], sensitive_keys=["ssn"], stdlib=False)
    log.info("user", ssn="123", password="p")
    assert captured.entries()[1]["password"] == "p"
    log.configure(outputs=[log.Output(captured.stream)], sensitive_keys=["password"], stdlib=False)
    log.info("user", password="p")  # known to be clear under the previous set, not this one
    assert captured.entries()[2]["password"] == "[REDACTED]"


def test_format_argument_and_default_output(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(format="logfmt", stdlib=False)
    try:
        log.info("to stdout")
    finally:
        reset()
    assert parse_logfmt(capsys.readouterr().out.strip())["msg"] == "to stdout"


def test_clue_log_format_overrides_and_bad_values_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setenv("CLUE_LOG_FORMAT", "logfmt")
    try:
        log.configure(format="json", outputs=[log.Output(stream)], stdlib=False)
        log.info("env wins")
        assert parse_logfmt(stream.getvalue().strip())["msg"] == "env wins"
        monkeypatch.setenv("CLUE_LOG_FORMAT", "xml")
        with pytest.raises(ValueError, match=r"CLUE_LOG_FORMAT='xml'.*json.*logfmt.*terminal"):
            log.configure(stdlib=False)
        log.info("previous configuration kept")
    finally:
        monkeypatch.delenv("CLUE_LOG_FORMAT")
        reset()
    assert [parse_logfmt(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "env wins",
        "previous configuration kept",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "yaml"}, "format='yaml'"),
        ({"max_value_size": 0}, "max_value_size"),
        ({"buffer_size": "10"}, "buffer_size"),
        ({"outputs": []}, "outputs"),
        ({"sensitive_keys": "password"}, "sensitive_keys"),
    ],
)
def test_bad_configuration_is_a_clear_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        log.configure(**options)


def test_an_unknown_output_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown log format 'xml': use one of json, logfmt"):
        log.Output(io.StringIO(), "xml")
    with pytest.raises(ValueError, match="Output needs a text stream"):
        log.Output(io.BytesIO(), "json")  # type: ignore[arg-type]


def test_clue_debug_env(monkeypatch: pytest.MonkeyPatch, captured: Captured) -> None:
    monkeypatch.setenv("CLUE_DEBUG", "on")
    log.configure(outputs=[log.Output(captured.stream)], stdlib=False)
    assert log.debug_enabled()
    monkeypatch.setenv("CLUE_DEBUG", "maybe")
    with pytest.raises(ValueError, match="CLUE_DEBUG='maybe'"):
        log.configure(stdlib=False)


def test_terminal_on_a_tty_json_otherwise() -> None:
    code = "from clue import log; import os, sys;log.configure(stdlib=False); log.info('hi', n=1)"
    env = {k: v for k, v in os.environ.items() if k not in ("CLUE_LOG_FORMAT", "NO_COLOR")}
    piped = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(piped.stdout)["msg"] == "hi"
    master, slave = os.openpty()
    try:
        subprocess.run([sys.executable, "-c", code], stdout=slave, env=env, check=True)
        os.close(slave)
        text = os.read(master, 4096).decode()
    finally:
        os.close(master)
    assert "\x1b[" in text and "hi" in text and not text.startswith("{")


def test_unencodable_text_and_broken_streams_do_not_crash(tmp_path: Path) -> None:
    with open(tmp_path / "ascii.log", "w", encoding="ascii") as ascii_stream:
        closed = io.StringIO()
        closed.close()
        log.configure(outputs=[log.Output(ascii_stream), log.Output(closed)], stdlib=False)
        try:
            log.info("café", lone="\udc80")
        finally:
            reset()
    entry = json.loads((tmp_path / "ascii.log").read_text())
    assert entry["msg"] == "café" and entry["lone"] == "\udc80"


def test_a_broken_custom_renderer_loses_nothing() -> None:
    def broken(_logger: object, _method: str, _event: dict[str, Any]) -> str:
        raise KeyError("colour")

    text = write_one(broken, n=1)
    entry = json.loads(text)
    assert (entry["msg"], entry["n"], entry["render_error"]) == (
        "hello world",
        1,
        "KeyError: 'colour'",
    )


def test_renderers_returning_bytes() -> None:
    to_bytes = structlog.processors.JSONRenderer(serializer=lambda ev, **_: json.dumps(ev).encode())
    assert json.loads(write_one(to_bytes))["msg"] == "hello world"


def test_terminal_keeps_user_keys_structlog_would_interpret() -> None:
    plain = ANSI.sub("", write_one("terminal", exc_info=True, stack="s", traceback=["x"]))
    assert "exc_info_=True" in plain and "stack_=s" in plain and "traceback=['x']" in plain


def test_default_output_reads_clue_log_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reset()  # never configured: the first entry sets up the default output
    monkeypatch.setenv("CLUE_LOG_FORMAT", "logfmt")
    try:
        log.info("lazy default")
    finally:
        reset()
    assert parse_logfmt(capsys.readouterr().out.strip())["msg"] == "lazy default"


def test_json_is_the_same_without_the_c_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    from clue.log import renderers

    event = {"msg": "né\u2028", "n": 1.5, "nested": {"list": [None, True, "x"]}}
    fast = renderers.render_json(None, "info", event)
    monkeypatch.setattr(renderers, "_chunks", None)
    assert renderers.render_json(None, "info", event) == fast
    assert json.loads(fast) == event and "\u2028" not in fast


def test_a_bad_clue_log_format_without_configure_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reset()
    monkeypatch.setenv("CLUE_LOG_FORMAT", "xml")
    try:
        log.info("still logged")
    finally:
        monkeypatch.delenv("CLUE_LOG_FORMAT")
        reset()
    problem, entry = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert problem["level"] == "error" and "CLUE_LOG_FORMAT='xml'" in problem["msg"]
    assert entry["msg"] == "still logged"
