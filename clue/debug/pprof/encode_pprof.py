"""Encoding profiles in the gzipped pprof protobuf format read by ``go tool pprof``."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Sequence

from clue.debug.pprof.frames import Frame
from clue.debug.pprof.heap import HeapProfile, window_totals
from clue.debug.pprof.profile_pb2 import Function, Line, Location, Mapping, Profile, ValueType
from clue.debug.pprof.sampler import CPUProfile


class ProfileBuilder:
    """Fills a `Profile` message: interns strings, functions and locations."""

    def __init__(
        self,
        sample_types: Sequence[tuple[str, str]],
        period_type: tuple[str, str],
        period: int,
        default_sample_type: str,
    ) -> None:
        self.profile = Profile()
        self._strings: dict[str, int] = {}
        self._functions: dict[tuple[str, str, int], int] = {}
        self._locations: dict[tuple[int, int], int] = {}
        self.string("")
        self.profile.sample_type.extend(self._value_type(t, u) for t, u in sample_types)
        self.profile.period_type.CopyFrom(self._value_type(*period_type))
        self.profile.period = period
        self.profile.default_sample_type = self.string(default_sample_type)
        self.profile.mapping.append(  # the interpreter; its frames come already symbolized
            Mapping(
                id=1,
                filename=self.string(sys.executable),
                has_functions=True,
                has_filenames=True,
                has_line_numbers=True,
            )
        )

    def string(self, text: str) -> int:
        """The string table index of ``text``, added on first use."""
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self.profile.string_table)
            self.profile.string_table.append(text)
        return index

    def location(self, frame: Frame) -> int:
        """The id of the location of ``frame`` (one function, one line)."""
        key = (frame.function, frame.filename, frame.start_line)
        function_id = self._functions.get(key)
        if function_id is None:
            function_id = self._functions[key] = len(self.profile.function) + 1
            name = self.string(frame.function)
            self.profile.function.append(
                Function(
                    id=function_id,
                    name=name,
                    system_name=name,
                    filename=self.string(frame.filename),
                    start_line=frame.start_line,
                )
            )
        location_id = self._locations.get((function_id, frame.line))
        if location_id is None:
            location_id = self._locations[(function_id, frame.line)] = (
                len(self.profile.location) + 1
            )
            line = Line(function_id=function_id, line=frame.line)
            self.profile.location.append(Location(id=location_id, mapping_id=1, line=[line]))
        return location_id

    def sample(
        self, stack: Sequence[Frame], values: Iterable[int], labels: dict[str, str] | None = None
    ) -> None:
        """Add a sample for ``stack`` (root first, as clue stores stacks)."""
        sample = self.profile.sample.add()
        sample.location_id.extend(self.location(frame) for frame in reversed(stack))
        sample.value.extend(values)
        for key, value in (labels or {}).items():
            sample.label.add(key=self.string(key), str=self.string(value))

    def comment(self, text: str) -> None:
        """Attach a free-form note, shown by ``go tool pprof -comments``."""
        self.profile.comment.append(self.string(text))

    def gzipped(self) -> bytes:
        """The serialized profile, gzip-compressed as pprof files are."""
        return gzip.compress(self.profile.SerializeToString(), compresslevel=6)

    def _value_type(self, type_: str, unit: str) -> ValueType:
        return ValueType(type=self.string(type_), unit=self.string(unit))


def cpu_pprof(profile: CPUProfile) -> bytes:
    """A CPU profile as gzipped pprof: ``samples/count`` and ``cpu/nanoseconds`` per stack.

    Each sample carries a ``thread`` label with the thread's name.
    """
    builder = ProfileBuilder(
        [("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        profile.period_ns,
        "cpu",
    )
    builder.profile.time_nanos = profile.start_ns
    builder.profile.duration_nanos = profile.duration_ns
    for sample in profile.samples:
        builder.sample(sample.stack, (sample.count, sample.cpu_ns), {"thread": sample.thread})
    if not profile.cpu_clocks:
        builder.comment("no per-thread CPU clocks: cpu is one period per sample")
    own_ms = profile.sampler_cpu_ns / 1e6
    where = "in its SIGPROF handler" if profile.mode == "signal" else "in its own thread"
    builder.comment(
        f"sampler: {profile.mode} mode, {profile.ticks} ticks, {own_ms:.1f} ms of CPU {where}"
    )
    return builder.gzipped()


def heap_pprof(profile: HeapProfile) -> bytes:
    """A heap profile as gzipped pprof: ``inuse_objects/count`` and ``inuse_space/bytes``."""
    builder = ProfileBuilder(
        [("inuse_objects", "count"), ("inuse_space", "bytes")], ("space", "bytes"), 1, "inuse_space"
    )
    builder.profile.time_nanos = profile.start_ns
    builder.profile.duration_nanos = profile.duration_ns
    for sample in profile.samples:
        builder.sample(sample.stack, (sample.objects, sample.bytes))
    builder.comment(f"allocated during the window and still alive: {window_totals(profile)}")
    builder.comment(f"tracemalloc: {profile.traced_bytes} B traced, {profile.peak_bytes} B peak")
    return builder.gzipped()
