"""Optionally keep a benchmark's servers and its load generator on different CPU cores.

On a small machine a server and the client driving it share the cores, and
how much CPU the client leaves the server changes from one round to the next
(and with whatever else runs): the same code measured 0.56 to 0.88 of bare
from round to round. With ``CLUE_BENCH_PIN=1`` every server runs on the first
core and the load on the others, so each configuration is measured saturating
one core of its own, the way a one-CPU container runs it, and the rounds agree
to within a few percent: the regime for comparing two versions of clue.

The goals' targets were set, and their reference figures (the official
OpenTelemetry middleware and interceptor) measured, without pinning, which is
the default: pinned, every stack ratio comes out lower, the references' too.
"""

from __future__ import annotations

import os

_CORES = "CLUE_BENCH_CORES"  # the cores of the first benchmark process, for its children


def _pinning() -> bool:
    return os.environ.get("CLUE_BENCH_PIN", "") == "1" and hasattr(os, "sched_setaffinity")


def _cores() -> list[int]:
    known = os.environ.get(_CORES)
    if known is not None:
        return [int(core) for core in known.split(",") if core]
    cores = sorted(os.sched_getaffinity(0)) if _pinning() else []
    os.environ[_CORES] = ",".join(map(str, cores))  # before any process pins itself
    return cores


_cores()  # recorded at import, before anything is pinned


def pin_server() -> None:
    """With pinning on and two cores or more, pin this (server) process to the first."""
    cores = _cores()
    if _pinning() and len(cores) >= 2:
        os.sched_setaffinity(0, {cores[0]})


def pin_load() -> str:
    """With pinning on, pin this (load) process to the cores the servers leave; say where
    each runs."""
    cores = _cores()
    if not _pinning():
        return "servers and load share the cores (CLUE_BENCH_PIN=1 separates them)"
    if len(cores) < 2:
        return "servers and load share the only core"
    os.sched_setaffinity(0, set(cores[1:]))
    return f"each server on core {cores[0]}, the load on cores {','.join(map(str, cores[1:]))}"
