"""A CPU profile as a self-contained HTML flame graph (inline script and style, no network)."""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from typing import Any

from clue.debug.pprof.sampler import CPUProfile


def flamegraph(profile: CPUProfile, title: str = "CPU profile") -> str:
    """An HTML page drawing ``profile`` as a clickable, zoomable flame graph.

    The root is on top, then one box per thread, then each thread's stacks;
    a box's width is its share of CPU time. Frames of the same function at
    the same depth under the same caller are merged whatever their line.
    """
    template = resources.files(__package__).joinpath("flamegraph.html").read_text("utf-8")
    data = json.dumps(_tree(profile), separators=(",", ":")).replace("<", "\\u003c")
    seconds = profile.duration_ns / 1e9
    heading = f"{title}: {seconds:.1f} s, {len(profile.samples)} stacks"
    return template.replace("{{TITLE}}", html.escape(heading)).replace("{{DATA}}", data)


def _tree(profile: CPUProfile) -> dict[str, Any]:
    root = _Node("all", "")
    for sample in profile.samples:
        node = root
        node.add(sample.cpu_ns, sample.count)
        node = node.child(f"thread {sample.thread}", "")
        node.add(sample.cpu_ns, sample.count)
        for frame in sample.stack:
            where = f"{os.path.basename(frame.filename)}:{frame.start_line}"
            node = node.child(frame.function, where)
            node.add(sample.cpu_ns, sample.count)
    return root.as_json()


class _Node:
    """A box of the graph: a function under its callers, with its CPU time and samples."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        self.where = where
        self.cpu_ns = 0
        self.samples = 0
        self.children: dict[tuple[str, str], _Node] = {}

    def add(self, cpu_ns: int, samples: int) -> None:
        self.cpu_ns += cpu_ns
        self.samples += samples

    def child(self, name: str, where: str) -> _Node:
        found = self.children.get((name, where))
        if found is None:
            found = self.children[(name, where)] = _Node(name, where)
        return found

    def as_json(self) -> dict[str, Any]:
        """The compact form the page's script reads: name, where, value, samples, children."""
        children = sorted(self.children.values(), key=lambda child: -child.cpu_ns)
        return {
            "n": self.name,
            "f": self.where,
            "v": self.cpu_ns,
            "s": self.samples,
            "c": [child.as_json() for child in children],
        }
