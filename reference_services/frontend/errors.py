"""Errors shown as pages: an HTTP status, a title and the chain of causes."""

from __future__ import annotations

import grpc

#: HTTP status of a page whose downstream call failed with a gRPC status.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ShopError(Exception):
    """A failure rendered as an error page.

    ``chain`` lists the causes from the outermost (what the shop was doing)
    to the innermost (what the failing service said).
    """

    def __init__(self, status: int, title: str, chain: list[str]) -> None:
        super().__init__(f"{status} {title}: " + " <- ".join(chain))
        self.status = status
        self.title = title
        self.chain = chain


def from_rpc(error: grpc.RpcError, doing: str) -> ShopError:
    """The page of a failed gRPC call made while ``doing`` something."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    status = HTTP_STATUS.get(code, 500)
    chain = [doing, f"{code.name}: {details}"]
    return ShopError(status, _TITLES.get(status, "Something went wrong"), chain)


_TITLES = {
    404: "Not found",
    409: "Cannot do that now",
    422: "Invalid request",
    503: "A service is unavailable",
    504: "A service took too long",
}
