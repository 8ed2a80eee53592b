"""Heap profiles with tracemalloc: what was allocated during a window and is still alive."""

from __future__ import annotations

import os
import time
import tracemalloc
from dataclasses import dataclass

from clue.debug.pprof.frames import Frame
from clue.debug.pprof.srcnames import function_at

DEFAULT_FRAMES = 16
MAX_FRAMES = 64


@dataclass(frozen=True, slots=True)
class HeapSample:
    """Live memory allocated from one stack (root first) during the window."""

    stack: tuple[Frame, ...]
    objects: int
    bytes: int


@dataclass(frozen=True, slots=True)
class HeapProfile:
    """Allocations made during the window and still alive at its end, per stack.

    ``traced_bytes`` and ``peak_bytes`` are tracemalloc's totals at the end;
    ``started_tracing`` says whether the recorder turned tracemalloc on (and
    off again), otherwise it was already tracing and the samples are each
    stack's growth over the window; ``frames`` is how deep stacks go.
    """

    samples: list[HeapSample]
    start_ns: int
    duration_ns: int
    traced_bytes: int
    peak_bytes: int
    started_tracing: bool
    frames: int

    @property
    def total_bytes(self) -> int:
        """Bytes allocated during the window and still alive."""
        return sum(sample.bytes for sample in self.samples)

    @property
    def total_objects(self) -> int:
        """Memory blocks allocated during the window and still alive."""
        return sum(sample.objects for sample in self.samples)


class HeapRecorder:
    """Records allocations between `start` and `stop` with tracemalloc.

    tracemalloc is started (keeping ``frames`` frames per allocation) only if
    it is not tracing yet, and then stopped again by `stop`, which frees its
    memory: its cost is only paid during the window, but it is high, since
    every allocation is hooked (how much slower allocation-heavy code runs,
    more so the more frames are kept: docs/performance.md#profilers).
    """

    def __init__(self, frames: int = DEFAULT_FRAMES) -> None:
        if not 1 <= frames <= MAX_FRAMES:
            raise ValueError(f"frames must be between 1 and {MAX_FRAMES}, got {frames}")
        self.frames = frames
        self._started = False
        self._before: dict[_RawTraceback, tuple[int, int]] | None = None
        self._start_ns = 0
        self._start_mono = 0

    def start(self) -> None:
        """Begin the window."""
        self._started = not tracemalloc.is_tracing()
        if self._started:
            tracemalloc.start(self.frames)
        self._start_ns = time.time_ns()
        self._start_mono = time.monotonic_ns()
        # Tracing that starts now has nothing from before the window: spare a snapshot.
        self._before = {} if self._started else _live(tracemalloc.take_snapshot())

    def cancel(self) -> None:
        """End the window without a profile (stops tracemalloc if `start` started it)."""
        if self._started and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._started = False

    def stop(self) -> HeapProfile:
        """End the window and return the allocations still alive."""
        if self._before is None:
            raise RuntimeError("this recorder was never started")
        try:
            snapshot = tracemalloc.take_snapshot()
            traced, peak = tracemalloc.get_traced_memory()
            frames = tracemalloc.get_traceback_limit()
        finally:
            if self._started:
                tracemalloc.stop()
        duration = time.monotonic_ns() - self._start_mono
        samples = []
        for traceback, (count, size) in _live(snapshot).items():
            count_before, size_before = self._before.get(traceback, (0, 0))
            if size > size_before and count > count_before:
                stack = _frames(traceback)
                samples.append(HeapSample(stack, count - count_before, size - size_before))
        samples.sort(key=lambda sample: -sample.bytes)
        return HeapProfile(samples, self._start_ns, duration, traced, peak, self._started, frames)


def heap_text(profile: HeapProfile, top: int = 20) -> str:
    """The ``top`` lines holding the most live memory allocated during the window."""
    by_line: dict[Frame, list[int]] = {}
    for sample in profile.samples:
        leaf = sample.stack[-1] if sample.stack else Frame("<unknown>", "<unknown>", 0)
        totals = by_line.setdefault(leaf, [0, 0])
        totals[0] += sample.bytes
        totals[1] += sample.objects
    ranked = sorted(by_line.items(), key=lambda item: -item[1][0])[:top]
    total = profile.total_bytes
    seconds = profile.duration_ns / 1e9
    lines = [
        f"Heap profile: allocations made during the last {seconds:.1f} s and still alive",
        f"Total: {window_totals(profile)}",
        f"tracemalloc: {_size(profile.traced_bytes)} traced now, "
        f"{_size(profile.peak_bytes)} peak"
        + (" (started for this profile" if profile.started_tracing else " (already tracing")
        + f", {profile.frames} frames)",
        "",
        f"{'live':>10} {'%':>6} {'objects':>9}  function (file:line)",
    ]
    for frame, (size, count) in ranked:
        share = 100 * size / total if total else 0.0
        where = f"{os.path.basename(frame.filename)}:{frame.line}"
        lines.append(f"{_size(size):>10} {share:5.1f}% {count:>9}  {frame.function} ({where})")
    return "\n".join(lines) + "\n"


_RawTraceback = tuple[tuple[str, int], ...]
"""A traceback as tracemalloc stores it: (file, line) pairs, most recent first."""


def _live(snapshot: tracemalloc.Snapshot) -> dict[_RawTraceback, tuple[int, int]]:
    """Blocks and bytes alive per traceback, leaving out tracemalloc's own.

    Reads the snapshot's raw trace tuples when it can: tracemalloc's own
    grouping builds an object per trace and takes seconds per 100k traces.
    """
    raw = getattr(snapshot.traces, "_traces", None)
    if raw is None:  # another Python's internals: the documented (slower) way
        raw = [
            (0, t.size, tuple((f.filename, f.lineno) for f in reversed(t.traceback)), 0)
            for t in snapshot.traces
        ]
    # Equal tracebacks are one shared tuple in a snapshot; grouping by identity
    # first spares hashing every trace's whole traceback.
    by_id: dict[int, tuple[_RawTraceback, list[int]]] = {}
    for _domain, size, traceback, *_ in raw:
        found = by_id.get(id(traceback))
        if found is None:
            by_id[id(traceback)] = (traceback, [1, size])
        else:
            found[1][0] += 1
            found[1][1] += size
    own = tracemalloc.__file__
    totals: dict[_RawTraceback, tuple[int, int]] = {}
    for traceback, (count, size) in by_id.values():
        if traceback and traceback[0][0] == own:
            continue
        count_before, size_before = totals.get(traceback, (0, 0))
        totals[traceback] = (count_before + count, size_before + size)
    return totals


def _frames(traceback: _RawTraceback) -> tuple[Frame, ...]:
    """Raw tracemalloc frames as `Frame` values, root first, with function names looked up."""
    frames = []
    for filename, line in reversed(traceback):
        function, start = function_at(filename, line)
        frames.append(Frame(function, filename, line, start))
    return tuple(frames)


def window_totals(profile: HeapProfile) -> str:
    """``<size> in <n> objects``: what the window left alive."""
    return f"{_size(profile.total_bytes)} in {profile.total_objects} objects"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
