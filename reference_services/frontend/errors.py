"""Errors shown as pages: what the visitor reads, and the chain of causes kept for us.

The page tells the visitor, in plain words, what went wrong and what they can
fix (the ``reasons``); it never shows an internal: no gRPC status, no address,
no exception. The ``chain`` of causes, from what the shop was doing to what the
failing service said, goes to the log and to the request's span.
"""

from __future__ import annotations

import grpc

#: HTTP status of a page whose downstream call failed with a gRPC status.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
#: Codes whose details a service writes for its caller to act on (an expired
#: card, an empty cart): the page shows them, cut to :data:`MAX_REASON` characters.
CALLER_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
MAX_REASON = 200


class ShopError(Exception):
    """A failure rendered as an error page.

    The visitor reads ``status``, ``title``, ``message`` and ``reasons``;
    ``chain`` lists the causes from the outermost (what the shop was doing) to
    the innermost (what the failing service said), for the log and the trace.
    """

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        reasons: list[str] | None = None,
        chain: list[str] | None = None,
    ) -> None:
        self.chain = chain or [message]
        super().__init__(f"{status} {title}: " + " <- ".join(self.chain))
        self.status = status
        self.title = title
        self.message = message
        self.reasons = reasons or []


def from_rpc(error: grpc.RpcError, doing: str) -> ShopError:
    """The page of a failed gRPC call made while ``doing`` something."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    status = HTTP_STATUS.get(code, 500)
    reasons = []
    if code in CALLER_CODES and details:
        reasons = [details if len(details) <= MAX_REASON else details[:MAX_REASON] + "…"]
    return ShopError(
        status,
        _TITLES.get(status, "Something went wrong"),
        _MESSAGES.get(status, "Something went wrong on our side while {doing}.").format(
            doing=doing
        ),
        reasons=reasons,
        chain=[doing, f"{code.name}: {details}"],
    )


_TITLES = {
    404: "Not found",
    401: "Not signed in",
    409: "Cannot do that now",
    422: "Invalid request",
    429: "Too many attempts",
    503: "A service is unavailable",
    504: "A service took too long",
}
_MESSAGES = {
    404: "Nothing was found while {doing}.",
    401: "The shop could not go on with {doing}: please log in again.",
    409: "The shop cannot go on with {doing} right now.",
    429: "Too many attempts while {doing}: please wait a minute.",
    422: "The shop could not go on with {doing}.",
    503: "Part of the shop is unavailable, so {doing} failed. Please try again in a moment.",
    504: "Part of the shop took too long while {doing}. Please try again in a moment.",
}
