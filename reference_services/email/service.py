"""EmailService over gRPC: renders the confirmation and logs it instead of mailing it."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from clue import log
from reference_services.common.config import NoSettings
from reference_services.common.rpc import invalid_argument, require, rpc
from reference_services.common.runtime import Wiring, run_grpc_service
from reference_services.email.confirmation import render, valid_email
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc


class Email(pb_grpc.EmailServiceServicer):
    """Sends order confirmations (to the log)."""

    @rpc
    async def SendOrderConfirmation(
        self, request: pb.SendOrderConfirmationRequest, context: Any
    ) -> pb.Empty:
        """Render the confirmation of ``order`` for ``email`` and log it."""
        if not valid_email(request.email):
            raise invalid_argument(f"email {request.email!r} is not an email address")
        if not request.HasField("order"):
            raise invalid_argument("order is required")
        require(request.order.order_id, "order.order_id")
        trace.get_current_span().set_attribute("app.order.id", request.order.order_id)
        body = render(request.order)
        log.print("order confirmation sent", order_id=request.order.order_id, body=body)
        return pb.Empty()


class Config(NoSettings):
    """The email service needs no settings of its own."""


async def build(config: Config) -> Wiring:
    """The email servicer."""
    return Wiring(servicers=[(pb_grpc.add_EmailServiceServicer_to_server, Email())])


def main() -> int:
    """Run the email service until SIGTERM."""
    return run_grpc_service("email", Config.from_env, build)
