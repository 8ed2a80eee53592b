"""The order confirmation email, rendered from a Jinja2 template."""

from __future__ import annotations

import jinja2

from reference_services.common.money import format_money
from reference_services.protos import hipstershop_pb2 as pb

_TEMPLATE = jinja2.Environment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
TEMPLATE = _TEMPLATE.from_string(
    """Subject: Your boutique order {{ order.order_id }}

Thank you for your order!

Order:       {{ order.order_id }}
Tracking:    {{ order.shipping_tracking_id }}
Shipping:    {{ money(order.shipping_cost) }}
Ship to:     {{ order.shipping_address.street_address }}, {{ order.shipping_address.zip_code }} \
{{ order.shipping_address.city }}, {{ order.shipping_address.state }}, \
{{ order.shipping_address.country }}

Items:
{% for line in order.items %}
  {{ line.item.quantity }} x {{ line.item.product_id }} at {{ money(line.cost) }} each
{% endfor %}
"""
)


def render(order: pb.OrderResult) -> str:
    """The confirmation text for ``order``."""
    return TEMPLATE.render(order=order, money=format_money)
