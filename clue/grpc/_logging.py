"""Server logging layers: the request scope with its access line, and debug payloads."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from clue import log
from clue._payload import message_payload
from clue._request_id import HEADER, request_id_or_new
from clue._status import is_grpc_error
from clue.grpc._rpc import Metadata, RpcInfo, is_expected, metadata_value
from clue.log import report_unhandled


class RequestLog:
    """Open a request log scope per call; write one unbuffered line with code and duration.

    A code ``is_error`` holds for flushes the scope's buffered entries; an unexpected
    exception is logged as an error (which flushes too).
    """

    def __init__(
        self,
        *,
        log_requests: bool = True,
        quiet_prefixes: tuple[str, ...] = (),
        is_error: Callable[[grpc.StatusCode], bool] = is_grpc_error,
    ) -> None:
        self._log_requests = log_requests
        self._quiet = quiet_prefixes
        self._is_error = is_error

    def enter(
        self, info: RpcInfo, context: Any, metadata: Metadata, request: Any
    ) -> tuple[Any, float, bool]:
        request_id = request_id_or_new(metadata_value(metadata, HEADER))
        scope = log.request_scope(method=info.full, peer=context.peer(), request_id=request_id)
        scope.__enter__()
        quiet = not self._log_requests or info.full.startswith(self._quiet)
        return scope, time.perf_counter(), quiet

    def exit(
        self,
        state: tuple[Any, float, bool],
        context: Any,
        code: grpc.StatusCode,
        response: Any,
        exc: BaseException | None,
    ) -> None:
        scope, started, quiet = state
        try:
            if exc is not None and not is_expected(exc):
                report_unhandled(exc)
            elif code is not grpc.StatusCode.OK and self._is_error(code):
                log.flush()
            if not quiet:
                # to the µs, without round() and its decimal conversion
                duration_ms = int((time.perf_counter() - started) * 1e6) / 1000
                log.print("request", code=code._name_, duration_ms=duration_ms)  # no enum property
        finally:
            scope.__exit__(None, None, None)


class Payloads:
    """When debug logs are on (at the call's start), log its request and response
    messages as JSON: each message of a stream, with its number in the stream."""

    def enter(self, info: RpcInfo, context: Any, metadata: Metadata, request: Any) -> bool:
        if not log.debug_enabled():
            return False
        if request is not None:
            log.debug("request payload", payload=message_payload(request))
        return True

    def exit(
        self,
        state: bool,
        context: Any,
        code: grpc.StatusCode,
        response: Any,
        exc: BaseException | None,
    ) -> None:
        if state and response is not None:
            log.debug("response payload", payload=message_payload(response))

    def message(self, state: bool, sent: bool, number: int, message: Any) -> None:
        if state:
            text = "response payload" if sent else "request payload"
            log.debug(text, message_id=number, payload=message_payload(message))

    def counted(self, state: bool, sent: int | None, received: int | None) -> None:
        """Nothing: the counts are the span's."""
