"""The stdlib ``logging`` bridge: records of any library go through clue.log."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clue import log
from clue.log.stdlib import ClueHandler
from clue.testing import reset
from tests.conftest import free_port
from tests.test_log_fixtures import Captured


@pytest.fixture
def bridged() -> Iterator[Captured]:
    """clue.log with the stdlib bridge installed, writing JSON into memory."""
    out = Captured()
    log.configure(outputs=[log.Output(out.stream, "json")], debug=False)
    yield out
    reset()


def test_records_use_the_clue_pipeline(bridged: Captured) -> None:
    logger = logging.getLogger("shop.orders")
    with log.context(request_id="r1"):
        logger.warning("low stock for %s", "sku-1", extra={"sku": "sku-1", "password": "x"})
    (entry,) = bridged.entries()
    assert entry["level"] == "warn" and entry["msg"] == "low stock for sku-1"
    assert (entry["logger"], entry["sku"], entry["request_id"]) == ("shop.orders", "sku-1", "r1")
    assert entry["password"] == "[REDACTED]"


class Sealed(Exception):
    """An exception that takes no attributes."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(name)


def test_an_unhandled_exception_reported_by_clue_is_not_written_again(bridged: Captured) -> None:
    logger = logging.getLogger("server")
    reported, other, sealed = ValueError("reported"), ValueError("other"), Sealed("sealed")
    with log.request_scope(request_id="r1"):
        for exc in (reported, sealed):
            log.api.report_unhandled(exc)
    for exc in (reported, other, sealed):
        logger.error("Exception in application", exc_info=exc)
    logger.warning("retrying after %s", reported, exc_info=reported)  # below error: written
    entries = [(e["msg"], e["error"], e.get("request_id")) for e in bridged.entries()]
    assert entries == [
        ("unhandled exception", "reported", "r1"),
        ("unhandled exception", "sealed", "r1"),
        ("Exception in application", "other", None),
        ("Exception in application", "sealed", None),  # could not be marked: written
        ("retrying after reported", "reported", None),
    ]


def test_levels_and_debug_toggle(bridged: Captured) -> None:
    logger = logging.getLogger("shop")
    logger.debug("hidden")
    logger.info("info")
    logger.critical("critical")
    log.set_debug(True)
    assert logging.getLogger().level == logging.DEBUG
    logger.debug("shown")
    log.set_debug(False)
    assert logging.getLogger().level == logging.INFO
    logger.debug("hidden again")
    assert [(e["level"], e["msg"]) for e in bridged.entries()] == [
        ("info", "info"),
        ("fatal", "critical"),
        ("debug", "shown"),
    ]


def test_records_honour_the_request_scope(bridged: Captured) -> None:
    logger = logging.getLogger("shop")
    with log.request_scope(request_id="ok"):
        logger.info("buffered")
        logger.warning("buffered too")
    assert bridged.lines() == []
    with log.request_scope(request_id="bad"):
        logger.info("first")
        try:
            raise ConnectionError("db down")
        except ConnectionError:
            logger.exception("query failed")
    first, failed = bridged.entries()
    assert first["msg"] == "first" and failed["msg"] == "query failed"
    assert failed["error_type"] == "ConnectionError" and "Traceback" in failed["traceback"]
    assert first["request_id"] == failed["request_id"] == "bad"


def test_records_carry_trace_ids(bridged: Captured) -> None:
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("lib").info("inside a span")
    (entry,) = bridged.entries()
    assert entry["trace_id"] == f"{span.get_span_context().trace_id:032x}"


def test_buffered_records_keep_the_ids_of_their_span(bridged: Captured) -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with log.request_scope():
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("lib").info("buffered in a span")
        log.error("failed")
    buffered, _ = bridged.entries()
    assert buffered["span_id"] == f"{span.get_span_context().span_id:016x}"


def test_one_root_handler_and_nothing_printed_twice(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    root.addHandler(logging.StreamHandler(sys.stderr))  # e.g. left by logging.basicConfig()
    stream = io.StringIO()
    try:
        for _ in range(3):
            log.configure(outputs=[log.Output(stream, "json")])
        assert sum(isinstance(h, ClueHandler) for h in root.handlers) == 1
        logging.getLogger("twice").warning("once only")
    finally:
        reset()
    assert not any(isinstance(h, ClueHandler) for h in root.handlers)
    assert stream.getvalue().count("once only") == 1
    assert "once only" not in capsys.readouterr().err


def test_uvicorn_default_logging_config_is_taken_over(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)  # what uvicorn.run() does by default
    assert logging.getLogger("uvicorn").propagate is False
    stream = io.StringIO()
    try:
        log.configure(outputs=[log.Output(stream, "json")])
        logging.getLogger("uvicorn.error").info("Started server process")
    finally:
        reset()
    assert logging.getLogger("uvicorn").propagate is True
    assert json.loads(stream.getvalue())["logger"] == "uvicorn.error"
    assert "Started server process" not in capsys.readouterr().err


def test_records_logged_while_rendering_do_not_loop(bridged: Captured) -> None:
    def noisy(_logger: object, _method: str, event: dict[str, object]) -> str:
        logging.getLogger("renderer").warning("rendering %s", event["msg"])
        return str(event["msg"])

    stream = io.StringIO()
    log.configure(outputs=[log.Output(stream, noisy)])
    logging.getLogger("app").warning("hello")
    log.warn("direct")
    # the renderer's own record is written once; the record it logs while rendering that is not
    assert stream.getvalue() == "rendering hello\nhello\nrendering direct\ndirect\n"


def test_uvicorn_and_httpx_records_go_through_clue(bridged: Captured) -> None:
    async def hello(_request: Request) -> JSONResponse:
        logging.getLogger("app").info("handling")
        return JSONResponse({"ok": True})

    port = free_port()
    app = Starlette(routes=[Route("/", hello)])
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(f"http://127.0.0.1:{port}/").json() == {"ok": True}
    finally:
        server.should_exit = True
        thread.join(10)
    loggers = {e["logger"] for e in bridged.entries()}
    assert {"uvicorn.error", "httpx", "app"} <= loggers
    started = [e for e in bridged.entries() if "Uvicorn running" in e["msg"]]
    assert len(started) == 1 and started[0]["level"] == "info"
    assert "color_message" not in started[0]


def test_grpc_records_go_through_clue(bridged: Captured) -> None:
    def boom(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        raise RuntimeError("handler bug")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    handler = grpc.method_handlers_generic_handler(
        "test.Svc", {"Boom": grpc.unary_unary_rpc_method_handler(boom)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as failure:
                channel.unary_unary("/test.Svc/Boom")(b"x", timeout=10)
            assert failure.value.code() == grpc.StatusCode.UNKNOWN
    finally:
        server.stop(None).wait()
    (entry,) = [e for e in bridged.entries() if e["logger"].startswith("grpc")]
    assert entry["level"] == "error" and entry["error_type"] == "RuntimeError"
    assert "handler bug" in entry["traceback"]
