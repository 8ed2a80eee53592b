"""Who owns SIGTERM: the program by default (clue flushes at exit), clue when asked.

Every case is a real process exporting to a real OTLP receiver; the batch
delay is ten minutes, so only the exit or SIGTERM flush can export anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

import clue
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.conftest import free_port
from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent

SERVICE = textwrap.dedent(
    """
    import os, signal, sys, time
    import clue
    from clue import log, telemetry
    from opentelemetry import trace

    mode = sys.argv[1]

    def own(signum, frame):
        print("own handler ran", flush=True)
        sys.exit(3)

    if mode in ("own", "chain"):
        signal.signal(signal.SIGTERM, own)
    before = signal.getsignal(signal.SIGTERM)
    # entries wait too, and only a flush writes them (to stderr: stdout is for the test)
    log.configure(write_delay=60, outputs=[log.Output(sys.stderr)])
    clue.configure("sigterm-" + mode, handle_sigterm=mode in ("opt-in", "chain", "fork"))
    if mode == "chain":  # a second call does not hook twice
        clue.configure("sigterm-" + mode, handle_sigterm=True)
    if mode in ("fork", "fork-exit"):
        child = os.fork()
        if child:
            status = os.waitpid(child, 0)[1]
            print("child", os.waitstatus_to_exitcode(status), flush=True)
            sys.exit(0)
    if mode == "fork":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what a pre-fork server's worker does
        clue.configure("sigterm-fork-child", handle_sigterm=True)
    print("handler unchanged" if signal.getsignal(signal.SIGTERM) is before else "hooked")
    for i in range(20):
        with trace.get_tracer("svc").start_as_current_span(f"span-{i}"):
            log.info("handled", i=i)
    telemetry.meter("svc").create_counter("handled").add(20)
    print("ready", flush=True)
    if mode not in ("exit", "fork-exit"):
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
        OTEL_BSP_SCHEDULE_DELAY="600000",
        OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        OTEL_TRACES_SAMPLER="always_on",
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, str(script), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    expected = "handler unchanged" if mode in ("exit", "own", "fork-exit") else "hooked"
    assert process.stdout.readline().strip() == expected
    assert process.stdout.readline().strip() == "ready"
    return process


def _all_flushed(receiver: OTLPReceiver, service: str) -> None:
    """The 20 spans, their 20 log records and the counter, all from ``service``."""
    spans = receiver.wait_for(lambda r: len(r.spans()) >= 20 and r.spans())
    assert sorted(s.name for s in spans) == sorted(f"span-{i}" for i in range(20))
    assert {s.service_name for s in spans} == {service}
    logs = receiver.wait_for(lambda r: len(r.logs()) >= 20 and r.logs())
    assert sorted(r.attributes["i"] for r in logs) == list(range(20))
    counters = receiver.wait_for(lambda r: [m for m in r.metrics() if m.name == "handled"])
    assert [p.value for p in counters[0].points] == [20]


def test_by_default_clue_installs_no_handler_and_a_normal_exit_flushes_everything(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    process = _start(tmp_path, receiver, "exit")
    assert process.wait(30) == 0
    _all_flushed(receiver, "sigterm-exit")


def test_the_programs_own_handler_is_kept_and_its_exit_flushes(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    process = _start(tmp_path, receiver, "own")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 3
    assert process.stdout is not None
    assert process.stdout.read().strip() == "own handler ran"
    _all_flushed(receiver, "sigterm-own")


def test_opt_in_flushes_on_sigterm_then_terminates_as_by_default(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    process = _start(tmp_path, receiver, "opt-in")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == -signal.SIGTERM
    _all_flushed(receiver, "sigterm-opt-in")


def test_opt_in_chains_the_previous_handler_once(tmp_path: Path, receiver: OTLPReceiver) -> None:
    process = _start(tmp_path, receiver, "chain")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 3
    assert process.stdout is not None
    assert process.stdout.read().strip() == "own handler ran"
    _all_flushed(receiver, "sigterm-chain")


def test_a_forked_worker_that_reset_sigterm_hooks_it_again(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    process = _start(tmp_path, receiver, "fork")  # "hooked", "ready": the child's lines
    child_pid = int(
        subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=True
        ).stdout
    )
    os.kill(child_pid, signal.SIGTERM)
    assert process.wait(30) == 0
    assert process.stdout is not None
    assert process.stdout.read().strip() == f"child {-signal.SIGTERM}"
    _all_flushed(receiver, "sigterm-fork-child")


def test_a_forked_child_that_ends_normally_flushes_at_its_exit(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """The child has none of its parent's threads: clue starts its shutdown threads again
    in it, since at exit Python 3.12 and later refuse to start one."""
    process = _start(tmp_path, receiver, "fork-exit")  # "handler unchanged", "ready": the child's
    assert process.wait(30) == 0
    assert process.stdout is not None
    assert process.stdout.read().strip() == "child 0"
    _all_flushed(receiver, "sigterm-fork-exit")


def test_the_boutiques_runtime_owns_sigterm_and_still_flushes(receiver: OTLPReceiver) -> None:
    """reference_services/common/runtime.py stops on its own loop signal handler and
    calls clue.shutdown() itself: the call made just before SIGTERM is exported."""
    port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLUE_"))}
    env.update(
        PORT=str(port),
        ADMIN_PORT=str(admin_port),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="600000",
        OTEL_TRACES_SAMPLER="always_on",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "reference_services.shipping"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(f"http://127.0.0.1:{admin_port}/livez").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ShippingServiceStub(channel)
            stub.GetQuote(pb.GetQuoteRequest(items=[pb.CartItem(product_id="P", quantity=1)]))
        assert receiver.spans() == []  # still queued: only the shutdown flush sends it
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    spans = receiver.wait_for(lambda r: r.spans())
    assert [(s.name, s.service_name) for s in spans] == [
        ("hipstershop.ShippingService/GetQuote", "shipping")
    ]


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_a_bad_handle_sigterm_is_refused(bad: object) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError, match="handle_sigterm must be True or False"):
        clue.configure("bad", handle_sigterm=bad)  # type: ignore[arg-type]
    assert signal.getsignal(signal.SIGTERM) is before


def test_handle_sigterm_off_the_main_thread_is_refused() -> None:
    errors: list[BaseException] = []

    def configure() -> None:
        try:
            clue.configure("thread", handle_sigterm=True)
        except ValueError as exc:
            errors.append(exc)

    worker = threading.Thread(target=configure)
    worker.start()
    worker.join()
    assert [str(e) for e in errors] == [
        "handle_sigterm=True needs configure() in the main thread: "
        "Python sets signal handlers there only"
    ]
