"""Which outcomes of a request count as errors: one rule for HTTP and gRPC.

An error flushes the request's buffered log entries and sets its SERVER span's
status to error. By default it is a server fault: an HTTP status of 500 or
more, or a gRPC code whose HTTP equivalent is one (``UNKNOWN``, ``INTERNAL``,
``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``UNIMPLEMENTED``, ``DATA_LOSS``), as
OpenTelemetry's semantic conventions say for server spans. The caller's faults
(``NOT_FOUND``, ``INVALID_ARGUMENT``, 4xx) are answers, not errors.
"""

from __future__ import annotations

from typing import Any

# The HTTP status of each gRPC code, by its number (google/rpc/code.proto).
HTTP_STATUS_OF_GRPC: dict[int, int] = {
    0: 200,  # OK
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}


def is_http_error(status: int) -> bool:
    """The default rule: an HTTP status of 500 or more is an error."""
    return status >= 500


def is_grpc_error(code: Any) -> bool:
    """The default rule for a ``grpc.StatusCode``: its HTTP status is an error."""
    return is_http_error(HTTP_STATUS_OF_GRPC.get(code.value[0], 500))
