"""The CPU sampler's two clocks: SIGPROF in the main thread, or a thread of its own; which one
``mode="auto"`` takes, and that a program's own SIGPROF and ITIMER_PROF are left alone."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeVar

import httpx
import pytest

from clue.admin import AdminServer
from clue.debug.pprof import CPUProfile, CPUSampler, SignalModeUnavailable, cpu_pprof, sigprof
from tests.test_pprof_support import decode, flat, running, spin_hot_loop

HOT = "spin_hot_loop"
T = TypeVar("T")


# SIGPROF handlers that leave SIGPROF free for a sampler: the default, and the no-op one a
# signal-mode sampler leaves behind so that a late SIGPROF cannot terminate the process.
FREE = (signal.SIG_DFL, sigprof._stray)


@pytest.fixture(autouse=True)
def sigprof_untouched() -> Iterator[None]:
    """Every test starts and ends with SIGPROF free and ITIMER_PROF disarmed."""
    assert signal.getsignal(signal.SIGPROF) in FREE
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    yield
    left = signal.getsignal(signal.SIGPROF), signal.getitimer(signal.ITIMER_PROF)
    signal.setitimer(signal.ITIMER_PROF, 0, 0)  # so that one failure does not spread
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    assert left[0] in FREE and left[1] == (0.0, 0.0)


def spin_for(seconds: float) -> None:
    """``spin_hot_loop`` in this thread for ``seconds`` of wall-clock time."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    spin_hot_loop(stop)
    timer.join()


def spin_until(done: Callable[[], bool], deadline: float = 30.0) -> None:
    """``spin_hot_loop`` in this thread, 50 ms at a time, until ``done()`` (at most
    ``deadline`` seconds): a busy machine gives the process less CPU, so fewer SIGPROF ticks
    per second of wall-clock time."""
    give_up = time.monotonic() + deadline
    while not done():
        assert time.monotonic() < give_up, f"still not done after {deadline} s of spinning"
        spin_for(0.05)


def in_thread(call: Callable[[], T]) -> T:
    """``call()`` run in a new thread (not the main one); its result or its exception."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="not-main")
    thread.start()
    thread.join(30)
    if failure:
        raise failure[0]
    return outcome[0]


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "clue-cpu-sampler"]


def leaf_cpu(profile: CPUProfile, thread: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for sample in profile.samples:
        if sample.thread == thread:
            leaf = sample.stack[-1].function
            totals[leaf] = totals.get(leaf, 0) + sample.cpu_ns
    return totals


def test_signal_mode_samples_a_busy_main_thread_without_a_thread() -> None:
    sampler = CPUSampler(hz=100)
    sampler.start()
    assert sampler.used_mode == "signal"
    assert signal.getsignal(signal.SIGPROF) not in FREE
    assert signal.getitimer(signal.ITIMER_PROF)[1] == pytest.approx(0.01)  # every 10 ms of CPU
    assert not sampler_threads()
    cpu_start = time.thread_time()
    spin_until(lambda: time.thread_time() - cpu_start >= 0.5)  # CPU, whatever the load
    cpu = time.thread_time() - cpu_start
    profile = sampler.stop()

    assert profile.mode == "signal"
    top = profile.samples[0]
    assert (top.thread, top.stack[-1].function) == ("MainThread", HOT)
    assert "spin_for" in [frame.function for frame in top.stack]
    assert "_on_sigprof" not in [f.function for s in profile.samples for f in s.stack]
    assert 0.6 * cpu * 100 <= profile.ticks <= 1.2 * cpu * 100 + 2  # one per 10 ms of CPU
    main_cpu = sum(leaf_cpu(profile, "MainThread").values())
    assert main_cpu == pytest.approx(cpu * 1e9, rel=0.15)
    assert 0 < profile.sampler_cpu_ns < 0.05 * cpu * 1e9  # the handler's ticks only
    decoded = decode(cpu_pprof(profile))
    strings = decoded.string_table
    assert [strings[c] for c in decoded.comment if strings[c].startswith("sampler:")] == [
        f"sampler: signal mode, {profile.ticks} ticks, "
        f"{profile.sampler_cpu_ns / 1e6:.1f} ms of CPU in its SIGPROF handler"
    ]


def test_signal_mode_samples_a_busy_worker_while_the_main_thread_waits() -> None:
    """The signal lands on the running worker; the tick runs when the main thread next runs."""
    with running(spin_hot_loop, "hot-worker"):
        sampler = CPUSampler(mode="signal")
        sampler.start()
        worker_start = time.process_time()
        give_up = time.monotonic() + 30  # the worker's CPU, hence the ticks, depends on the load
        while sampler._ticks < 20:  # an event loop waking up for its timers
            assert time.monotonic() < give_up, sampler._ticks
            time.sleep(0.02)
        profile = sampler.stop()
        used = time.process_time() - worker_start
    assert profile.mode == "signal"
    hot = leaf_cpu(profile, "hot-worker")
    assert max(hot, key=lambda name: hot[name]) == HOT
    assert profile.ticks >= 20
    assert sum(hot.values()) == pytest.approx(used * 1e9, rel=0.25)


def test_a_main_thread_blocked_all_along_delays_the_tick_but_keeps_the_cpu() -> None:
    with running(spin_hot_loop, "hot-worker"):
        sampler = CPUSampler(mode="signal")
        sampler.start()
        worker_start = time.process_time()
        time.sleep(1.0)  # SIGPROF goes to the worker; the handler waits for this thread
        profile = sampler.stop()
        used = time.process_time() - worker_start
    assert 1 <= profile.ticks <= 3
    hot = leaf_cpu(profile, "hot-worker")
    assert sum(hot.values()) == pytest.approx(used * 1e9, rel=0.25)


def test_auto_from_another_thread_uses_the_thread_mode() -> None:
    def profile_from_a_thread() -> CPUProfile:
        sampler = CPUSampler()
        sampler.start()
        assert sampler.used_mode == "thread" and sampler_threads()
        assert signal.getsignal(signal.SIGPROF) in FREE
        time.sleep(0.5)
        return sampler.stop()

    with running(spin_hot_loop, "hot-worker"):
        profile = in_thread(profile_from_a_thread)
    assert profile.mode == "thread"
    assert (profile.samples[0].thread, profile.samples[0].stack[-1].function) == (
        "hot-worker",
        HOT,
    )
    strings = decode(cpu_pprof(profile)).string_table
    assert any(s.startswith("sampler: thread mode, ") and "own thread" in s for s in strings)


def test_signal_mode_from_another_thread_is_refused() -> None:
    sampler = CPUSampler(mode="signal")
    with pytest.raises(SignalModeUnavailable, match="only be installed from the main thread"):
        in_thread(sampler.start)
    assert sampler.used_mode is None and not sampler_threads()


def test_thread_mode_is_used_when_asked_for() -> None:
    sampler = CPUSampler(mode="thread")
    sampler.start()
    assert sampler.used_mode == "thread" and sampler_threads()
    assert signal.getsignal(signal.SIGPROF) in FREE
    assert sampler.stop().mode == "thread"


def test_a_programs_own_sigprof_handler_is_left_alone() -> None:
    seen: list[int] = []

    def own(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    signal.signal(signal.SIGPROF, own)
    try:
        with pytest.raises(SignalModeUnavailable, match="SIGPROF already has a handler"):
            CPUSampler(mode="signal").start()
        sampler = CPUSampler()
        sampler.start()
        assert sampler.used_mode == "thread"
        time.sleep(0.1)
        assert sampler.stop().mode == "thread"
        assert signal.getsignal(signal.SIGPROF) is own
        signal.raise_signal(signal.SIGPROF)
        assert seen == [signal.SIGPROF]
    finally:
        signal.signal(signal.SIGPROF, signal.SIG_DFL)


def test_a_programs_own_itimer_prof_is_left_alone() -> None:
    signal.setitimer(signal.ITIMER_PROF, 3600, 3600)  # an hour of CPU: never fires here
    try:
        with pytest.raises(SignalModeUnavailable, match="ITIMER_PROF is already armed"):
            CPUSampler(mode="signal").start()
        sampler = CPUSampler()
        sampler.start()
        assert sampler.used_mode == "thread"
        sampler.stop()
        assert signal.getitimer(signal.ITIMER_PROF)[1] == 3600
        assert signal.getsignal(signal.SIGPROF) in FREE
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)


def test_signal_mode_must_be_stopped_from_the_main_thread() -> None:
    sampler = CPUSampler(mode="signal")
    sampler.start()
    with pytest.raises(RuntimeError, match="stopped from the main thread"):
        in_thread(sampler.stop)
    assert signal.getsignal(signal.SIGPROF) not in FREE  # still sampling
    assert sampler.stop().mode == "signal"
    assert sampler.stop().mode == "signal"  # a second stop changes nothing


def test_a_failing_tick_never_reaches_the_interrupted_code() -> None:
    sampler = CPUSampler(mode="signal")
    sampler.start()

    def broken(frames: object, *, record: bool) -> None:
        raise KeyError("boom")

    sampler._tick = broken  # type: ignore[method-assign]
    spin_until(lambda: sampler._failure is not None)  # interrupted, unharmed
    spin_for(0.1)  # and again, after the first failure
    with pytest.raises(RuntimeError, match="tick of the CPU sampler failed") as failed:
        sampler.stop()
    assert isinstance(failed.value.__cause__, KeyError)


def test_a_sigprof_during_a_tick_does_not_nest_ticks() -> None:
    sampler = CPUSampler(mode="signal")
    sampler.start()
    real_tick = sampler._tick
    depth = [0, 0]  # now, deepest

    def tick_meeting_a_signal(frames: dict[int, FrameType], *, record: bool) -> None:
        depth[0] += 1
        depth[1] = max(depth)
        signal.raise_signal(signal.SIGPROF)  # its handler runs at one of the next bytecodes
        sum(range(1000))
        real_tick(frames, record=record)
        depth[0] -= 1

    sampler._tick = tick_meeting_a_signal  # type: ignore[method-assign]
    spin_until(lambda: sampler._ticks >= 5)  # ticks come per 10 ms of CPU the machine gives us
    profile = sampler.stop()
    assert profile.ticks >= 5 and depth == [0, 1]


@pytest.mark.parametrize("mode", ["sigprof", "", "AUTO"])
def test_a_bad_mode_is_refused(mode: str) -> None:
    with pytest.raises(ValueError, match=f"mode must be one of auto, signal, thread; got '{mode}'"):
        CPUSampler(mode=mode)  # type: ignore[arg-type]


async def test_the_endpoint_on_the_main_threads_event_loop_uses_sigprof() -> None:
    """An asyncio service: the loop, in the main thread, is the busy one and serves the profile."""
    async with AdminServer(port=0, metrics=False) as admin, httpx.AsyncClient() as client:
        for mode, expected in (("auto", "signal"), ("thread", "thread")):
            url = f"{admin.url}/debug/pprof/profile?seconds=1&mode={mode}"
            request = asyncio.ensure_future(client.get(url, timeout=30))
            while not request.done():  # handlers doing CPU work between awaits
                spin_for(0.02)
                await asyncio.sleep(0)
            response = request.result()
            assert response.status_code == 200, response.text
            profile = decode(response.content)
            strings = profile.string_table
            (comment,) = [strings[c] for c in profile.comment if strings[c].startswith("sampler")]
            assert comment.startswith(f"sampler: {expected} mode, "), comment
            cpu = flat(profile, "cpu")
            assert max(cpu, key=lambda name: cpu[name]) == HOT


def test_a_sigprof_after_stop_is_ignored_and_the_next_profile_can_use_signals() -> None:
    first = CPUSampler(mode="signal")
    first.start()
    spin_for(0.2)
    assert first.stop().mode == "signal"
    assert signal.getsignal(signal.SIGPROF) is sigprof._stray
    signal.raise_signal(signal.SIGPROF)  # one still on its way when the timer stopped: ignored
    second = CPUSampler()
    second.start()
    spin_for(0.2)
    assert second.stop().mode == "signal"
