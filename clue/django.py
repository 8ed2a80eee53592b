"""Django integration: route names and exceptions for ``clue.wsgi.ClueMiddleware``.

In the project's ``wsgi.py``::

    application = clue.wsgi.ClueMiddleware(get_wsgi_application())

and first in ``settings.MIDDLEWARE``: ``"clue.django.ClueMiddleware"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from clue.wsgi import ROUTE_KEY


class ClueMiddleware:
    """Django middleware naming each request's route for ``clue.wsgi.ClueMiddleware``.

    It puts the URL pattern Django resolved (``request.resolver_match.route``,
    ``/items/<int:item_id>/``) in the WSGI environ, so that spans, request
    lines and metrics carry the route and not the raw path, and records a
    view's exception on the request's span (Django answers it 500 and logs it
    with its traceback through the ``django.request`` logger, which clue's
    stdlib bridge writes in the request's scope).
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        match = request.resolver_match
        if match is not None and isinstance(match.route, str):
            request.META[ROUTE_KEY] = "/" + match.route
        return response

    def process_exception(self, request: Any, exception: Exception) -> None:
        trace.get_current_span().record_exception(exception)
