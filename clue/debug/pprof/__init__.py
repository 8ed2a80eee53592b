"""pprof-like profiling of a running Python service: CPU, heap, threads, asyncio tasks.

Mount `routes` at ``/debug/pprof`` (``clue.debug.routes`` does it for you)::

    Mount("/debug/pprof", routes=clue.debug.pprof.routes())

or use the pieces directly: `CPUSampler` and `HeapRecorder` take profiles,
`cpu_pprof`, `collapsed`, `speedscope`, `flamegraph`, `heap_pprof` and
`heap_text` encode them. Needs the ``asgi`` extra for `routes`.
"""

from __future__ import annotations

from clue.debug.pprof.encode_pprof import cpu_pprof, heap_pprof
from clue.debug.pprof.encode_stacks import collapsed, speedscope
from clue.debug.pprof.flamegraph import flamegraph
from clue.debug.pprof.frames import Frame
from clue.debug.pprof.heap import HeapProfile, HeapRecorder, HeapSample, heap_text
from clue.debug.pprof.routes import routes
from clue.debug.pprof.sampler import CPUProfile, CPUSample, CPUSampler, SignalModeUnavailable

__all__ = [
    "CPUProfile",
    "CPUSample",
    "CPUSampler",
    "Frame",
    "HeapProfile",
    "HeapRecorder",
    "HeapSample",
    "SignalModeUnavailable",
    "collapsed",
    "cpu_pprof",
    "flamegraph",
    "heap_pprof",
    "heap_text",
    "routes",
    "speedscope",
]
