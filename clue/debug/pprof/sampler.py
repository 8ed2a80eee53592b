"""The CPU sampler: the stacks of every busy thread, about 100 times a second.

On each tick the sampler reads every thread's current Python frame
(`sys._current_frames`) and counts each distinct stack. Two clocks can drive
the ticks (``mode``):

* ``signal``: ``ITIMER_PROF`` sends SIGPROF every period of the process's CPU
  time and CPython runs the tick in the main thread, between two bytecodes
  (`clue.debug.pprof.sigprof`). A busy main thread (the event loop of an
  asyncio service) is sampled without giving up the GIL, so this costs only
  the tick itself. While the main thread
  is blocked the tick waits for it to wake up. Possible only when the
  sampler is started and stopped from the main thread and the program does
  not use SIGPROF or ``ITIMER_PROF`` itself.
* ``thread``: a background thread wakes up every period of wall-clock time.
  Each tick takes the GIL from the busy thread, and that hand-off (waking
  two threads) costs the busy thread several times the tick itself (the
  figures: docs/performance.md#profilers).

``auto`` (the default) takes ``signal`` when it can, else ``thread``. Idle
threads would drown the busy ones (a service has many threads parked in
``epoll``, lock waits, sleeps and queue gets), so by default a thread's
stack is only recorded when

* its CPU time advanced by at least 1% of a period since the previous
  tick, read from the thread's CPU clock (Linux: one ``clock_gettime`` per
  thread, nanosecond precise), which leaves out every thread that was
  blocked (or nearly) for the whole period; and
* its innermost Python frame is not a known wait point (a selector's
  ``select``, ``threading`` waits and joins, ``socket.accept``, an idle
  ``concurrent.futures`` worker), which leaves out threads that only woke
  up briefly and went back to waiting.

Where per-thread CPU clocks are not available only the second rule applies.
``include_idle=True`` records every thread on every tick (the CPU time of
an idle sample is then about zero, so CPU views still show the busy code).
The sampler's own thread is never recorded; in signal mode the main
thread is recorded where the signal interrupted it.
"""

from __future__ import annotations

import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from os import path
from types import FrameType
from typing import Literal, get_args

from clue.debug.pprof import sigprof
from clue.debug.pprof.frames import Frame, RawStack, raw_stack, resolve

DEFAULT_HZ = 100.0

Mode = Literal["auto", "signal", "thread"]
MODES: tuple[Mode, ...] = get_args(Mode)
UsedMode = Literal["signal", "thread"]

_STDLIB = sysconfig.get_paths()["stdlib"]
IDLE_LEAVES: frozenset[tuple[str, str]] = frozenset(
    (path.join(_STDLIB, module), function)
    for module, function in [
        ("selectors.py", "select"),
        ("threading.py", "wait"),
        ("threading.py", "_wait_for_tstate_lock"),
        ("queue.py", "get"),
        ("socket.py", "accept"),
        ("subprocess.py", "_try_wait"),
        ("concurrent/futures/thread.py", "_worker"),
    ]
)
"""(file, function) of innermost frames that mean "waiting", not "working"."""


@dataclass(frozen=True, slots=True)
class CPUSample:
    """How often one thread was seen busy in one stack (root first), and its CPU time."""

    thread: str
    stack: tuple[Frame, ...]
    count: int
    cpu_ns: int


@dataclass(frozen=True, slots=True)
class CPUProfile:
    """The result of a sampling run.

    ``mode`` is the clock that drove the ticks: ``period_ns`` of process CPU
    time (``signal``, so ``ticks`` per second grows with the busy threads and
    is zero when the process idles) or of wall-clock time (``thread``).
    ``cpu_clocks`` tells whether per-thread CPU time was measured; without
    it each sample's ``cpu_ns`` is one period. ``sampler_cpu_ns`` is what
    taking the profile cost: the CPU time of the SIGPROF handler's ticks, or
    of the sampler's own thread.
    """

    samples: list[CPUSample]
    start_ns: int
    duration_ns: int
    period_ns: int
    ticks: int
    cpu_clocks: bool
    sampler_cpu_ns: int = 0
    mode: UsedMode = "thread"


class SignalModeUnavailable(RuntimeError):
    """``mode="signal"`` was asked for where SIGPROF cannot drive the sampler."""


def thread_cpu_clock(native_id: int) -> int:
    """The Linux CPU-time clock id of thread ``native_id`` of this process.

    It is the kernel's encoding of a per-thread scheduler clock; reading a
    thread that is gone fails with EINVAL instead of reading another one.
    """
    return ((~native_id) << 3) | 6


def _cpu_clocks_work() -> bool:
    if not sys.platform.startswith("linux") or threading.current_thread().native_id is None:
        return False
    try:
        time.clock_gettime_ns(thread_cpu_clock(threading.get_native_id()))
    except OSError:
        return False
    return True


class CPUSampler:
    """Samples every thread's stack ``hz`` times a second until `stop`.

    ``hz`` counts seconds of the process's CPU time in signal mode (two busy
    threads give twice as many ticks per second of wall-clock time) and
    seconds of wall-clock time in thread mode. ``mode`` is ``"auto"``,
    ``"signal"`` or ``"thread"`` (see the module's documentation);
    `used_mode` tells which one `start` took.

    >>> sampler = CPUSampler()
    >>> sampler.start()
    >>> ...  # the code to profile runs, in any thread
    >>> profile = sampler.stop()
    """

    def __init__(
        self, hz: float = DEFAULT_HZ, *, include_idle: bool = False, mode: Mode = "auto"
    ) -> None:
        if not 1 <= hz <= 1000:
            raise ValueError(f"hz must be between 1 and 1000, got {hz}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.period_ns = int(1e9 / hz)
        self._busy_ns = self.period_ns // 100
        self.include_idle = include_idle
        self.mode = mode
        self.used_mode: UsedMode | None = None
        self.cpu_clocks = _cpu_clocks_work()
        self._counts: dict[tuple[str, RawStack], list[int]] = {}
        self._last_cpu: dict[int, int] = {}
        self._ticks = 0
        self._stopping = False
        self._known: dict[int, tuple[str, int | None]] = {}  # ident: name, native id
        self._seen: set[int] = set()
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread().ident
        self._ticking = False
        self._failure: Exception | None = None
        self._start_ns = 0
        self._start_mono = 0
        self._own_cpu_ns = 0

    def start(self) -> None:
        """Start sampling; a sampler runs once.

        Raises `SignalModeUnavailable` when ``mode="signal"`` and SIGPROF
        cannot be used: not the main thread, SIGPROF or ``ITIMER_PROF``
        already in use, no ``setitimer``.
        """
        if self.used_mode is not None:
            raise RuntimeError("this sampler was already started")
        self.used_mode = self._pick_mode()
        self._start_ns = time.time_ns()
        self._start_mono = time.monotonic_ns()
        if self.used_mode == "signal":
            self._tick(sys._current_frames(), record=False)  # CPU baselines
            sigprof.arm(self._on_sigprof, self.period_ns / 1e9)
        else:
            self._thread = threading.Thread(target=self._run, name="clue-cpu-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> CPUProfile:
        """Stop sampling and return what was seen.

        In thread mode it blocks for at most one period; in signal mode it
        must be called from the main thread, and it disarms the timer and
        leaves SIGPROF a handler that ignores it (`sigprof.disarm`).
        """
        mode = self.used_mode
        if mode is None:
            raise RuntimeError("this sampler was never started")
        if mode == "signal" and threading.get_ident() != self._main:
            raise RuntimeError("a sampler in signal mode must be stopped from the main thread")
        first_stop = not self._stopping
        self._stopping = True
        if self._thread is not None:
            self._thread.join()
        elif first_stop:
            sigprof.disarm()
        if self._failure is not None:
            raise RuntimeError("a SIGPROF tick of the CPU sampler failed") from self._failure
        return self._profile(mode, time.monotonic_ns() - self._start_mono)

    def _pick_mode(self) -> UsedMode:
        if self.mode == "thread":
            return "thread"
        reason = sigprof.unavailable()
        if reason is None:
            return "signal"
        if self.mode == "signal":
            raise SignalModeUnavailable(f"the signal mode is not possible: {reason}")
        return "thread"

    def _profile(self, mode: UsedMode, duration_ns: int) -> CPUProfile:
        merged: dict[tuple[str, tuple[Frame, ...]], list[int]] = {}
        for (thread, stack), (count, cpu) in self._counts.items():
            total = merged.setdefault((thread, resolve(stack)), [0, 0])
            total[0] += count
            total[1] += cpu
        samples = [CPUSample(t, s, c, ns) for (t, s), (c, ns) in merged.items()]
        samples.sort(key=lambda sample: (-sample.cpu_ns, -sample.count))
        return CPUProfile(
            samples,
            self._start_ns,
            duration_ns,
            self.period_ns,
            self._ticks,
            self.cpu_clocks,
            self._own_cpu_ns,
            mode,
        )

    def _on_sigprof(self, signum: int, frame: FrameType | None) -> None:
        """The SIGPROF handler: one tick, with the main thread where it was interrupted.

        It never raises into the interrupted code (`stop` reports a failure)
        and skips a SIGPROF that comes while it runs.
        """
        if self._ticking or self._stopping:
            return
        self._ticking = True
        started = time.thread_time_ns()
        try:
            frames = sys._current_frames()
            if frame is None:
                frames.pop(threading.get_ident(), None)
            else:
                frames[threading.get_ident()] = frame
            self._tick(frames, record=True)
            self._ticks += 1
        except Exception as exc:
            self._failure = self._failure or exc
        finally:
            self._own_cpu_ns += time.thread_time_ns() - started
            self._ticking = False

    def _run(self) -> None:
        # Much of a tick's CPU here is waking up and reading clocks: a plain sleep
        # is the cheapest wait (cheaper than an Event's timed wait), so `stop`
        # takes up to one period to land.
        own_start = time.thread_time_ns()
        me = threading.get_ident()
        period = self.period_ns / 1e9
        self._tick(_others(me), record=False)  # CPU baselines
        due = time.monotonic() + period
        while True:
            time.sleep(max(0.0, due - time.monotonic()))
            if self._stopping:
                break
            self._tick(_others(me), record=True)
            self._ticks += 1
            due += period
            now = time.monotonic()
            if due < now:  # late (a long GIL wait): skip missed ticks, never burst
                due = now + period
        self._own_cpu_ns = time.thread_time_ns() - own_start

    def _tick(self, frames: dict[int, FrameType], *, record: bool) -> None:
        """Count the stack of every busy thread of ``frames`` (thread ident: current frame)."""
        if not self._seen.issuperset(frames):
            self._learn_threads(frames)
        for ident, frame in frames.items():
            name, native_id = self._known.get(ident) or (f"thread-{ident}", None)
            cpu_ns = self.period_ns
            if self.cpu_clocks and native_id is not None:
                advanced = self._advance(native_id)
                if advanced is None:
                    continue
                if advanced < self._busy_ns and not self.include_idle:
                    continue
                cpu_ns = advanced
            if record and (self.include_idle or not _waiting(frame)):
                key = (name, raw_stack(frame))
                counts = self._counts.get(key)
                if counts is None:
                    self._counts[key] = [1, cpu_ns]
                else:
                    counts[0] += 1
                    counts[1] += cpu_ns

    def _learn_threads(self, frames: dict[int, FrameType]) -> None:
        """Names and native ids of the threads, read again only when a new ident shows up.

        ``threading.enumerate()`` on every tick would cost as much as the rest
        of the tick; a thread renamed during a profile keeps its old name.
        """
        self._known = {t.ident: (t.name, t.native_id) for t in threading.enumerate() if t.ident}
        self._seen = set(frames)

    def _advance(self, native_id: int) -> int | None:
        """CPU nanoseconds the thread used since the last tick (None: first sight or gone)."""
        try:
            now = time.clock_gettime_ns(thread_cpu_clock(native_id))
        except OSError:  # gone; if its ident came back with a new thread, learn that one
            self._seen.clear()
            return None
        last = self._last_cpu.get(native_id)
        self._last_cpu[native_id] = now
        return None if last is None else now - last


def _others(me: int) -> dict[int, FrameType]:
    """Every thread's current frame but thread ``me``'s."""
    frames = sys._current_frames()
    del frames[me]
    return frames


def _waiting(frame: FrameType) -> bool:
    code = frame.f_code
    return (code.co_filename, code.co_name) in IDLE_LEAVES
