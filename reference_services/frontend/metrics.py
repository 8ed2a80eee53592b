"""The shop's business metrics: the visits a conversion rate is measured against.

``boutique.frontend.conversions`` counts orders placed through the shop;
``boutique.frontend.sessions`` the sessions started (a visitor's first page)
and ``boutique.frontend.cart_views`` the cart pages shown. In Prometheus the
conversion rate of the last hour is
``sum(increase(boutique_frontend_conversions_total[1h]))
/ sum(increase(boutique_frontend_sessions_total[1h]))``.
"""

from __future__ import annotations

from opentelemetry import metrics

METER = metrics.get_meter("reference_services.frontend")
SESSIONS = METER.create_counter(
    "boutique.frontend.sessions",
    unit="{session}",
    description="Shop sessions started (a page requested without a session cookie)",
)
CART_VIEWS = METER.create_counter(
    "boutique.frontend.cart_views", unit="{view}", description="Cart pages shown"
)
CONVERSIONS = METER.create_counter(
    "boutique.frontend.conversions",
    unit="{order}",
    description="Orders placed through the shop, by the visitor's currency",
)

#: Requests that never start a session: static files and the load balancer's probe.
NOT_VISITS = ("/static/", "/_healthz")


def session_started(path: str) -> None:
    """Count a new session, unless ``path`` is not a page a visitor asked for."""
    if not path.startswith(NOT_VISITS):
        SESSIONS.add(1)


def cart_viewed() -> None:
    """Count a cart page shown."""
    CART_VIEWS.add(1)


def converted(currency: str) -> None:
    """Count an order placed in ``currency``."""
    CONVERSIONS.add(1, {"currency": currency})
