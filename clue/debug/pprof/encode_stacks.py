"""Encoding CPU profiles as folded stacks and as speedscope JSON."""

from __future__ import annotations

import json
from typing import Any

from clue.debug.pprof.frames import Frame
from clue.debug.pprof.sampler import CPUProfile

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def collapsed(profile: CPUProfile) -> str:
    """Folded stacks (Brendan Gregg's format), one line per stack, busiest first.

    Each line is ``thread;root frame;...;leaf frame <samples>`` where a frame
    reads ``function (file.py:line)``; ``flamegraph.pl``, speedscope and
    Pyroscope read it.
    """
    totals: dict[str, int] = {}
    for sample in profile.samples:
        names = [sample.thread, *(frame.label for frame in sample.stack)]
        line = ";".join(name.replace(";", ",") for name in names)
        totals[line] = totals.get(line, 0) + sample.count
    ordered = sorted(totals.items(), key=lambda item: -item[1])
    return "".join(f"{stack} {count}\n" for stack, count in ordered)


def speedscope(profile: CPUProfile, name: str = "CPU profile") -> str:
    """The profile in speedscope's file format: one sampled profile per thread.

    Weights are CPU nanoseconds; the busiest thread is shown first.
    """
    frames: list[dict[str, Any]] = []
    index: dict[Frame, int] = {}

    def frame_id(frame: Frame) -> int:
        found = index.get(frame)
        if found is None:
            found = index[frame] = len(frames)
            frames.append({"name": frame.function, "file": frame.filename, "line": frame.line})
        return found

    by_thread: dict[str, tuple[list[list[int]], list[int]]] = {}
    for sample in profile.samples:
        stacks, weights = by_thread.setdefault(sample.thread, ([], []))
        stacks.append([frame_id(frame) for frame in sample.stack])
        weights.append(sample.cpu_ns)
    threads = sorted(by_thread.items(), key=lambda item: -sum(item[1][1]))
    document = {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name,
        "exporter": "clue.debug.pprof",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": thread,
                "unit": "nanoseconds",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": stacks,
                "weights": weights,
            }
            for thread, (stacks, weights) in threads
        ],
    }
    return json.dumps(document, separators=(",", ":"))
