"""Where entries go: a text stream and the format it is written in."""

from __future__ import annotations

import io
import json
import sys
from typing import Any, TextIO

from clue.log.renderers import Renderer, renderer_for


class Output:
    """A destination of log lines: ``stream`` written in ``format``.

    ``format`` is ``"json"``, ``"logfmt"``, ``"terminal"`` or a renderer
    ``(logger, method_name, event_dict) -> str`` (any structlog renderer fits).
    ``None`` picks the configured default (``CLUE_LOG_FORMAT``, else terminal on
    a TTY and JSON otherwise). A ``stream`` of ``None`` means ``sys.stdout`` at
    the time of writing.
    """

    __slots__ = ("format", "render", "stream")

    def __init__(self, stream: TextIO | None = None, format: str | Renderer | None = None) -> None:
        if isinstance(stream, io.RawIOBase | io.BufferedIOBase) or not hasattr(
            stream or sys.stdout, "write"
        ):
            raise ValueError(f"Output needs a text stream (with write(str)), got {stream!r}")
        self.stream = stream
        self.format = format
        self.render: Renderer | None = None if format is None else renderer_for(format)

    def resolved(self, default_format: str | Renderer | None) -> Output:
        """This output, with ``default_format`` (or the TTY rule) when it names no format."""
        if self.render is not None:
            return self
        fmt = default_format or ("terminal" if _is_tty(self.target()) else "json")
        return Output(self.stream, fmt)

    def target(self) -> TextIO:
        """The stream lines are written to now."""
        return sys.stdout if self.stream is None else self.stream

    def write(self, text: str) -> None:
        """Write ``text`` (whole newline-terminated lines) and flush; never raises."""
        stream = self.target()
        try:
            try:
                stream.write(text)
            except UnicodeEncodeError:
                stream.write(_escape_unencodable(text, getattr(stream, "encoding", None)))
            stream.flush()
        except Exception:  # closed or broken stream: logging must not crash the app
            pass

    def __repr__(self) -> str:
        return f"Output({self.stream!r}, format={self.format!r})"


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _escape_unencodable(line: str, encoding: str | None) -> str:
    """``line`` with the characters ``encoding`` cannot carry written as JSON ``\\uXXXX`` escapes
    (valid inside the JSON strings and quoted logfmt values they come from)."""
    out = []
    for char in line:
        try:
            char.encode(encoding or "utf-8")
            out.append(char)
        except UnicodeEncodeError:
            out.append(json.dumps(char)[1:-1])
    return "".join(out)
