"""EmailService over gRPC: renders the confirmation and logs it instead of mailing it.

A caller that may send the same confirmation again (the notification service, after
a crash) names it with an ``idempotency-key`` metadata entry: a key seen before is
answered without a second e-mail. The service remembers the last `REMEMBERED` keys.
"""

from __future__ import annotations

from collections import OrderedDict

from opentelemetry import trace

from clue import log
from reference_services.common import fields
from reference_services.common.rpc import Context, invalid_argument, rpc
from reference_services.common.runtime import Entry, Wiring
from reference_services.email.confirmation import render
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc

IDEMPOTENCY_KEY = "idempotency-key"
REMEMBERED = 100_000


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


def idempotency_key(context: Context) -> str | None:
    """The call's ``idempotency-key`` metadata, if any: 1..128 visible ASCII characters."""
    for name, value in context.invocation_metadata() or ():
        if name == IDEMPOTENCY_KEY:
            return fields.identifier(str(value), IDEMPOTENCY_KEY)
    return None


class Email(pb_grpc.EmailServiceServicer):
    """Sends order confirmations (to the log), each idempotency key's once."""

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self.remembered = remembered
        self._sent: OrderedDict[str, None] = OrderedDict()

    @rpc
    async def SendOrderConfirmation(
        self, request: pb.SendOrderConfirmationRequest, context: Context
    ) -> pb.Empty:
        """Render the confirmation of ``order`` for ``email`` and log it."""
        fields.email(request.email)
        if not request.HasField("order"):
            raise invalid_argument("order is required")
        _check_order(request.order)
        key = idempotency_key(context)
        order_id = request.order.order_id
        trace.get_current_span().set_attribute("app.order.id", order_id)
        if key is not None and key in self._sent:
            log.info("confirmation already sent", order_id=order_id, idempotency_key=key)
            return pb.Empty()
        body = render(request.order)
        log.print("order confirmation sent", order_id=order_id, body=body)
        if key is not None:
            self._sent[key] = None
            if len(self._sent) > self.remembered:
                self._sent.popitem(last=False)
        return pb.Empty()


async def build() -> Wiring:
    """The email servicer."""
    return Wiring(servicers=[(pb_grpc.add_EmailServiceServicer_to_server, Email())])


ENTRY = Entry("email", build)
