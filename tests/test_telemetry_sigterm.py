"""shutdown() runs at exit and on SIGTERM, chaining the handler that was there before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent

SERVICE = textwrap.dedent(
    """
    import signal, sys, threading, time
    import clue
    from opentelemetry import trace

    mode = sys.argv[1]
    if mode == "chain":
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, previous)
    if mode == "thread":  # a first configure() off the main thread cannot handle signals
        worker = threading.Thread(target=clue.configure, args=("early",))
        worker.start()
        worker.join()
    clue.configure("sigterm-" + mode)
    with trace.get_tracer("svc").start_as_current_span("span-" + mode):
        pass
    print("ready", flush=True)
    if mode != "exit":
        time.sleep(60)
    """
)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    r.start()
    yield r
    r.stop()


def _start(tmp_path: Path, receiver: OTLPReceiver, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="600000",  # only the shutdown flush can export the span
        OTEL_METRICS_EXPORTER="none",
        OTEL_TRACES_SAMPLER="always_on",
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, str(script), mode], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


@pytest.mark.parametrize("mode", ["default", "thread"])
def test_sigterm_flushes_then_terminates_as_by_default(
    tmp_path: Path, receiver: OTLPReceiver, mode: str
) -> None:
    process = _start(tmp_path, receiver, mode)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == -signal.SIGTERM
    spans = receiver.wait_for(lambda r: r.spans())
    assert [(s.name, s.service_name) for s in spans] == [(f"span-{mode}", f"sigterm-{mode}")]


def test_sigterm_chains_the_previous_handler(tmp_path: Path, receiver: OTLPReceiver) -> None:
    process = _start(tmp_path, receiver, "chain")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 3
    assert process.stdout is not None
    assert process.stdout.read().strip() == "previous handler ran"
    assert [s.name for s in receiver.wait_for(lambda r: r.spans())] == ["span-chain"]


def test_normal_exit_flushes(tmp_path: Path, receiver: OTLPReceiver) -> None:
    process = _start(tmp_path, receiver, "exit")
    assert process.wait(30) == 0
    assert [s.name for s in receiver.wait_for(lambda r: r.spans())] == ["span-exit"]
