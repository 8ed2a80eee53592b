"""SIGPROF as the sampler's clock: ``ITIMER_PROF`` and a handler in the main thread.

``ITIMER_PROF`` counts the CPU time of the whole process (every thread), so
the signal comes once per period of CPU time, as Go's profiler has it: an
idle process gets none. The kernel delivers it to a thread that is running;
CPython notes it there and runs the Python handler in the main thread, at
its next bytecode. When the main thread is the busy one that costs nothing
more than the tick itself; when it is blocked (in a sleep, a lock or a
selector without a wake-up fd) the tick waits until it wakes up.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

Handler = Callable[[int, FrameType | None], None]


def unavailable() -> str | None:
    """Why SIGPROF cannot drive a sampler started in this thread now (None: it can)."""
    if not hasattr(signal, "setitimer"):
        return "this platform has no setitimer"
    if threading.current_thread() is not threading.main_thread():
        return "signal handlers can only be installed from the main thread"
    if signal.getsignal(signal.SIGPROF) not in (signal.SIG_DFL, _stray):
        return "SIGPROF already has a handler"
    if signal.getitimer(signal.ITIMER_PROF) != (0.0, 0.0):
        return "ITIMER_PROF is already armed"
    return None


def arm(handler: Handler, period_s: float) -> None:
    """Install ``handler`` for SIGPROF and fire it every ``period_s`` of process CPU time.

    The handler is installed with ``SA_RESTART``, so that system calls
    interrupted by it (in C extensions too) are restarted rather than fail
    with EINTR.
    """
    signal.signal(signal.SIGPROF, handler)
    try:
        signal.siginterrupt(signal.SIGPROF, False)
        signal.setitimer(signal.ITIMER_PROF, period_s, period_s)
    except BaseException:
        disarm()
        raise


def disarm() -> None:
    """Stop the timer, then leave SIGPROF a handler that ignores it.

    A SIGPROF raised just before the timer stopped may still be on its way to
    a thread; with the default action back it would terminate the process.
    The no-op handler stays installed (`unavailable` treats it as free).
    """
    try:
        signal.setitimer(signal.ITIMER_PROF, 0.0, 0.0)
    finally:
        signal.signal(signal.SIGPROF, _stray)


def _stray(signum: int, frame: FrameType | None) -> None:
    """Ignore a SIGPROF that arrives after the sampler stopped."""
