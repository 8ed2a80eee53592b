"""EmailService over gRPC: renders the confirmation and logs it instead of mailing it."""

from __future__ import annotations

from opentelemetry import trace

from clue import log
from reference_services.common import fields
from reference_services.common.rpc import Context, invalid_argument, rpc
from reference_services.common.runtime import Entry, Wiring
from reference_services.email.confirmation import render
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc


def _check_order(order: pb.OrderResult) -> None:
    """Ids, address, the shipping cost and at most `MAX_LINES` priced lines, in bounds."""
    fields.identifier(order.order_id, "order.order_id")
    fields.identifier(order.shipping_tracking_id, "order.shipping_tracking_id")
    fields.price(order.shipping_cost, "order.shipping_cost")
    fields.address(order.shipping_address, "order.shipping_address")
    fields.count(order.items, "order.items", fields.MAX_LINES)
    for i, line in enumerate(order.items):
        fields.cart_item(line.item, f"order.items[{i}].item")
        fields.price(line.cost, f"order.items[{i}].cost")


class Email(pb_grpc.EmailServiceServicer):
    """Sends order confirmations (to the log)."""

    @rpc
    async def SendOrderConfirmation(
        self, request: pb.SendOrderConfirmationRequest, context: Context
    ) -> pb.Empty:
        """Render the confirmation of ``order`` for ``email`` and log it."""
        fields.email(request.email)
        if not request.HasField("order"):
            raise invalid_argument("order is required")
        _check_order(request.order)
        trace.get_current_span().set_attribute("app.order.id", request.order.order_id)
        body = render(request.order)
        log.print("order confirmation sent", order_id=request.order.order_id, body=body)
        return pb.Empty()


async def build() -> Wiring:
    """The email servicer."""
    return Wiring(servicers=[(pb_grpc.add_EmailServiceServicer_to_server, Email())])


ENTRY = Entry("email", build)
