"""What the profilers cost a CPU-bound Python workload, measured against itself in the same run.

The workload (pure Python: arithmetic, dicts, strings, small objects) runs in
the main thread of a process that also has a dozen idle threads, as a
service does. Runs alternate between "profiler off" and "profiler on", and
each side keeps its best time, so that noise from the machine cancels out.
The CPU goal is on the workload's elapsed time (how much slower it runs),
as the median of the ratios of adjacent runs, which cancels the machine's
drift; the process's CPU time (all threads, the sampler's own wake-ups on the
other core included) is printed beside it as what the profiler costs the
machine. The heap figures are process CPU time.

* CPU: `clue.debug.pprof.CPUSampler` at 100 Hz, as ``/debug/pprof/profile``
  runs it, in its default mode ("auto": SIGPROF when started from the main
  thread, as here); the goal is a slowdown of at most 3%, the median over 15
  rounds of each round's profiled/plain ratio. The thread mode (a sampler
  thread, what "auto" falls back to elsewhere) is measured the same way in the
  same run and printed, not a goal.
* heap: `clue.debug.pprof.HeapRecorder` (tracemalloc with 16 frames), as
  ``/debug/pprof/heap`` runs it by default, and with 1 frame. tracemalloc
  hooks every allocation and cannot sample, so on allocation-heavy code it
  costs far more than 3x whatever clue does; the slowdowns are printed to be
  documented, and the goal is that the recorder adds at most 10% to what bare
  ``tracemalloc.start(16)`` costs the same workload in the same rounds.
  tracemalloc's cost drifts with the state of the process's heap (it grows
  as the process ages, profiles or not), so the first session's is printed
  too.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from _goal import goal

from clue.debug.pprof import CPUProfile, CPUSampler, HeapRecorder

ROUNDS = 15


class Item:
    __slots__ = ("price", "sku")

    def __init__(self, sku: str, price: int) -> None:
        self.sku = sku
        self.price = price


def checkout_workload(orders: int = 30_000) -> int:
    """Builds carts, prices them, indexes them by key: the kind of work a handler does."""
    index: dict[str, int] = {}
    total = 0
    for n in range(orders):
        cart = [Item(f"sku-{(n * 7 + k) % 97}", (n * k) % 1000 + 1) for k in range(8)]
        amount = sum(item.price for item in cart)
        discount = amount * 3 // 100 if amount > 4000 else 0
        key = f"{n % 512}:{cart[0].sku}"
        index[key] = index.get(key, 0) + amount - discount
        total += amount - discount
    return total + len(index)


CART = json.dumps(
    {
        "user": "u-1",
        "items": [
            {"sku": f"sku-{k}", "quantity": k % 3 + 1, "price": {"units": k * 3, "nanos": 5}}
            for k in range(20)
        ],
    }
)


def handler_workload(requests: int = 3000) -> int:
    """Decodes a JSON cart, prices it, encodes a reply: allocates less per unit of work."""
    total = 0
    for n in range(requests):
        cart = json.loads(CART)
        amount = sum(item["quantity"] * item["price"]["units"] for item in cart["items"])
        reply = json.dumps({"order": n, "total": amount, "items": len(cart["items"])})
        total += len(hashlib.sha256(reply.encode()).hexdigest())
    return total


RUNS = [0]  # workload runs so far


def timed(run: Callable[[], object]) -> float:
    RUNS[0] += 1
    start = time.process_time()
    run()
    return time.process_time() - start


def compare(
    start: Callable[[], object],
    stop: Callable[[object], None],
    rounds: int = ROUNDS,
    workload: Callable[[], object] = checkout_workload,
) -> tuple[float, float]:
    """Best time without and with the profiler, runs interleaved."""
    plain: list[float] = []
    profiled: list[float] = []
    for _ in range(rounds):
        plain.append(timed(workload))
        handle = start()
        profiled.append(timed(workload))
        stop(handle)
    return min(plain), min(profiled)


def paired(
    start: Callable[[], object], stop: Callable[[object], None], rounds: int = ROUNDS
) -> tuple[float, float, float, float]:
    """Best CPU times without and with the profiler, and the medians of each round's ratio
    of elapsed time (how much slower the workload ran) and of process CPU time (what the
    profiler cost the machine, its own thread's CPU on the other core included).

    A round's two runs are adjacent in time, so their ratio cancels slow drift
    of the machine that the two best times, taken from different rounds, do not.
    """
    plain: list[tuple[float, float]] = []
    profiled: list[tuple[float, float]] = []
    for _ in range(rounds):
        plain.append(elapsed_and_cpu(checkout_workload))
        handle = start()
        profiled.append(elapsed_and_cpu(checkout_workload))
        stop(handle)

    def median_ratio(i: int) -> float:
        ratios = sorted(p[i] / q[i] for p, q in zip(profiled, plain, strict=True))
        return ratios[len(ratios) // 2]

    best_plain = min(cpu for _, cpu in plain)
    best_profiled = min(cpu for _, cpu in profiled)
    return best_plain, best_profiled, median_ratio(0), median_ratio(1)


def elapsed_and_cpu(run: Callable[[], object]) -> tuple[float, float]:
    RUNS[0] += 1
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_start(mode: Literal["auto", "thread"]) -> CPUSampler:
    sampler = CPUSampler(hz=100, mode=mode)
    sampler.start()
    return sampler


def cpu_stop(handle: object) -> None:
    assert isinstance(handle, CPUSampler)
    profile = handle.stop()
    assert profile.samples and profile.samples[0].stack[-1].function in (
        "checkout_workload",
        "checkout_workload.<locals>.<genexpr>",
        "checkout_workload.<locals>.<listcomp>",
        "Item.__init__",
    ), profile.samples[0]
    CPU_PROFILES.append(profile)


def report_cpu(mode: Literal["auto", "thread"]) -> float:
    """Print what the CPU sampler in ``mode`` costs the workload; the median slowdown, in %."""
    CPU_PROFILES.clear()
    plain, profiled, slower, cost = paired(partial(cpu_start, mode), cpu_stop)
    (used,) = {profile.mode for profile in CPU_PROFILES}
    rate = sum(p.ticks / (p.duration_ns / 1e9) for p in CPU_PROFILES) / len(CPU_PROFILES)
    per_tick = sorted(p.sampler_cpu_ns / max(p.ticks, 1) for p in CPU_PROFILES)
    tick = per_tick[len(per_tick) // 2]
    own = "SIGPROF handler, in the main thread" if used == "signal" else "sampler thread"
    print(
        f"cpu profiler, mode={mode} (used: {used} mode): workload {plain * 1000:.1f} ms, "
        f"{profiled * 1000:.1f} ms while sampling at {rate:.0f} Hz (best of {ROUNDS}, "
        f"12 idle threads; {(profiled / plain - 1) * 100:+.1f}% best to best)"
    )
    print(
        f"  {own}: {tick / 1000:.1f} us of CPU per tick (median), "
        f"{tick * rate / 1e7:.2f}% of one core at {rate:.0f} Hz"
    )
    print(
        f"  process CPU time (every thread): {(cost - 1) * 100:+.2f}% (median round); "
        f"elapsed time of the workload: {(slower - 1) * 100:+.2f}%"
    )
    return (slower - 1) * 100


def heap_start(frames: int = 16) -> HeapRecorder:
    recorder = HeapRecorder(frames=frames)
    recorder.start()
    return recorder


def heap_stop(handle: object) -> None:
    assert isinstance(handle, HeapRecorder)
    profile = handle.stop()
    assert profile.started_tracing and profile.frames == handle.frames
    HEAP_PROFILES.append(len(profile.samples))


def compare_with_bare(rounds: int) -> tuple[float, float, float]:
    """Best times of the workload plain, under bare tracemalloc(16), under the recorder(16).

    Interleaved in each round, so both traced runs see the process in the
    same state (tracemalloc's cost drifts as the process ages).
    """
    plain: list[float] = []
    bare: list[float] = []
    traced: list[float] = []

    def run_bare() -> None:
        bare_start()
        bare.append(timed(checkout_workload))
        bare_stop(None)

    def run_recorder() -> None:
        recorder = heap_start(16)
        traced.append(timed(checkout_workload))
        heap_stop(recorder)

    for n in range(rounds):
        plain.append(timed(checkout_workload))
        for run in (run_bare, run_recorder) if n % 2 == 0 else (run_recorder, run_bare):
            run()  # alternating which goes first, so that drift favours neither
    return min(plain), min(bare), min(traced)


def bare_start() -> None:
    tracemalloc.start(16)


def bare_stop(handle: object) -> None:
    tracemalloc.stop()


CPU_PROFILES: list[CPUProfile] = []  # the CPU profiles of the current measurement
HEAP_PROFILES: list[int] = []  # stacks found by each heap profile taken


def main() -> None:
    stop_idle = threading.Event()
    idle = [threading.Thread(target=stop_idle.wait, daemon=True) for _ in range(12)]
    for thread in idle:
        thread.start()
    checkout_workload()  # warm up
    try:
        slower = report_cpu("auto")
        goal("ops.cpu_profiler_overhead", slower, "<=", 3, "%")  # median round
        report_cpu("thread")  # printed beside it, not a goal
        plain, fresh = compare(bare_start, bare_stop, rounds=1)
        print(
            f"bare tracemalloc.start(16), first session in this process: workload "
            f"{plain * 1000:.1f} ms, {fresh * 1000:.1f} ms ({fresh / plain:.1f}x)"
        )
        plain, shallow = compare(partial(heap_start, 1), heap_stop, rounds=3)
        print(
            f"heap profiler, frames=1: workload {plain * 1000:.1f} ms, {shallow * 1000:.1f} ms "
            f"under tracemalloc ({shallow / plain:.1f}x, best of 3)"
        )
        plain, bare, traced = compare_with_bare(rounds=3)
        print(
            f"heap profiler, frames=16 (default): workload {plain * 1000:.1f} ms, "
            f"{traced * 1000:.1f} ms under tracemalloc ({traced / plain:.1f}x), bare "
            f"tracemalloc.start(16) in the same rounds {bare * 1000:.1f} ms "
            f"({bare / plain:.1f}x; best of 3)"
        )
        print(
            f"bare tracemalloc now: {bare / fresh:.2f}x its first session's time "
            f"({len(HEAP_PROFILES)} heap profiles and {RUNS[0]} workload runs later)"
        )
        goal("ops.heap_profiler_over_tracemalloc", traced / bare, "<=", 1.1, "x")
        for frames in (1, 16):
            plain, traced = compare(
                partial(heap_start, frames), heap_stop, rounds=2, workload=handler_workload
            )
            print(
                f"heap profiler, frames={frames}, JSON handler workload: {plain * 1000:.1f} ms, "
                f"{traced * 1000:.1f} ms under tracemalloc ({traced / plain:.1f}x, best of 2)"
            )
    finally:
        stop_idle.set()


if __name__ == "__main__":
    main()
