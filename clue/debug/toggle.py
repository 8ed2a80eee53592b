"""Turn clue.log debug logs on and off while the process runs, optionally for a while."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

from clue import log
from clue.debug._text import quoted

MAX_TTL = 24 * 3600.0
"""The longest ttl accepted by default (seconds)."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+")

_lock = threading.Lock()
_timer: threading.Timer | None = None
_expires: float | None = None


@dataclass(frozen=True)
class DebugStatus:
    """Whether debug logs are on, and in how many seconds they turn off (if set)."""

    on: bool
    expires_in: float | None = None


def enable(ttl: float | None = None) -> None:
    """Turn debug logs on for the process; after ``ttl`` seconds, off again.

    Without ``ttl`` they stay on until `disable`; a new call replaces any
    pending ttl.
    """
    global _timer, _expires
    if ttl is not None and not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be between 0 and {MAX_TTL:g} seconds, got {ttl}")
    with _lock:
        _cancel()
        if ttl is not None:
            timer = threading.Timer(ttl, _expire)
            timer.daemon = True
            timer.name = "clue-debug-ttl"
            _timer, _expires = timer, time.monotonic() + ttl
            timer.start()
        log.set_debug(True)


def disable() -> None:
    """Turn debug logs off for the process (and drop any pending ttl)."""
    with _lock:
        _cancel()
        log.set_debug(False)


def status() -> DebugStatus:
    """The current debug state, as set here or by `clue.log.set_debug`."""
    with _lock:
        on = log.debug_enabled()
        left = None if _expires is None or not on else max(0.0, _expires - time.monotonic())
    return DebugStatus(on, None if left is None else round(left, 3))


def parse_ttl(text: str, max_ttl: float = MAX_TTL) -> float:
    """Seconds in ``text``: ``"90"``, ``"2.5"``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"500ms"``.

    Raises ValueError, with a message fit for the caller, unless it is a
    duration greater than 0 and at most ``max_ttl`` seconds.
    """
    value = text.strip()
    if _DURATION.fullmatch(value):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    elif _NUMBER.fullmatch(value):
        seconds = float(value)
    else:
        raise ValueError(
            'ttl must be a duration such as "30s", "5m", "1h" or a number of seconds, '
            f"got {quoted(text)}"
        )
    if not 0 < seconds <= max_ttl:
        raise ValueError(
            f"ttl must be more than 0 and at most {max_ttl:g} seconds, got {quoted(text)}"
        )
    return seconds


def _cancel() -> None:
    global _timer, _expires
    if _timer is not None:
        _timer.cancel()
    _timer = _expires = None


def _expire() -> None:
    global _timer, _expires
    with _lock:
        if _timer is not threading.current_thread():
            return  # replaced by a later enable() or disable()
        _timer = _expires = None
        log.set_debug(False)
    log.print("debug logs turned off: ttl expired")


def _after_fork_in_child() -> None:
    """A forked child (a pre-fork server's worker) renews the lock, which another thread
    of the parent may have held at the fork, and the ttl's timer, a thread it lacks: its
    debug logs turn off when the parent's do."""
    global _lock, _timer, _expires
    _lock = threading.Lock()
    expires, _timer, _expires = _expires, None, None
    if expires is not None:
        enable(max(expires - time.monotonic(), 0.001))


os.register_at_fork(after_in_child=_after_fork_in_child)
