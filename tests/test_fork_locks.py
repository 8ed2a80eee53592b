"""A fork while another thread holds a lock of the adaptive sampler, the debug toggle or
the health checker: the forked child (a pre-fork server's worker) goes on with each, where
it used to wait forever for a lock nobody in it would release. Run in a process of its
own, so the fork copies nothing of the test runner's threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORKING = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from opentelemetry.trace import SpanKind
    from clue import health
    from clue.debug import toggle
    from clue.telemetry import AdaptiveSampler

    sampler = AdaptiveSampler(max_sampled_per_second=1000, sample_size=1)
    checker = health.Checker(health.pinger("db", lambda: None))
    assert checker.check().healthy == {"db": True}  # its loop and thread, in the parent
    toggle.enable(0.4)  # the ttl's timer: a thread of the parent's

    # another thread holds the three locks while the main thread forks
    held = [sampler.root._lock, toggle._lock, checker._lock]
    holding, forked = threading.Event(), threading.Event()

    def hold():
        for lock in held:
            lock.acquire()
        holding.set()
        forked.wait()
        for lock in held:
            lock.release()

    threading.Thread(target=hold, daemon=True).start()
    holding.wait()
    pid = os.fork()
    if pid == 0:
        found = {
            "sampled": sampler.should_sample(None, 1 << 40, "root", SpanKind.SERVER).decision.name,
            "health": checker.check().healthy,
            "debug on": toggle.status().on,
        }
        time.sleep(0.6)  # the parent's ttl ends in the child too, on a timer of its own
        found["debug on after the ttl"] = toggle.status().on
        toggle.enable(60)  # and the toggle's lock is free
        found["debug on again"] = toggle.status().on
        print(json.dumps(found), flush=True)
        os._exit(0)
    forked.set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            sys.exit(os.waitstatus_to_exitcode(status))
        time.sleep(0.05)
    os.kill(pid, 9)  # deadlocked: leave no process behind
    sys.exit("the child deadlocked")
    """
)


def test_a_child_forked_while_the_locks_are_held_goes_on() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    done = subprocess.run(
        [sys.executable, "-c", FORKING],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert json.loads(lines[-1]) == {
        "sampled": "RECORD_AND_SAMPLE",
        "health": {"db": True},
        "debug on": True,
        "debug on after the ttl": False,
        "debug on again": True,
    }
