"""The web shop's Starlette application: routes, pages and their gRPC calls."""

from __future__ import annotations

import asyncio
import datetime
import hmac
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from clue import log
from clue.asgi import ClueMiddleware
from reference_services.frontend import metrics, money
from reference_services.frontend.accounts import Accounts
from reference_services.frontend.calls import call, optional
from reference_services.frontend.clients import Clients
from reference_services.frontend.errors import ShopError
from reference_services.frontend.forms import (
    FormError,
    cart_form,
    checkout_form,
    currency_form,
    product_id,
    quote,
    read_form,
)
from reference_services.frontend.orders import OrderPages
from reference_services.frontend.session import (
    COOKIE_MAX_AGE,
    CURRENCY_COOKIE,
    SESSION_COOKIE,
    ShopSession,
)
from reference_services.frontend.stock import stock_of
from reference_services.frontend.visitor import (
    CSRF_FIELD,
    Verifier,
    cart_id,
    drop_token_cookie,
    visitor_of,
)
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos.boutique.v1 import user_pb2 as upb

HERE = Path(__file__).parent
#: Paths the clue middleware leaves alone: the load balancer's probe and the
#: static files (each would be a trace of its own).
QUIET_PATHS = ("/_healthz", "/static/")
MAX_RECOMMENDATIONS = 4
Handler = Callable[[Request], Awaitable[Response]]


class Shop:
    """The pages of the shop over the downstream :class:`Clients`."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.verifier = Verifier(clients.authorizer) if clients.authorizer else None
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters["money"] = money.render
        # templates ship with the code: no stat() of the file on every render
        self.templates.env.auto_reload = False

    # --- shared ------------------------------------------------------------------------

    async def _convert(self, amount: pb.Money, currency: str) -> pb.Money:
        if amount.currency_code == currency:
            return amount
        request = pb.CurrencyConversionRequest(to_code=currency)
        getattr(request, "from").CopyFrom(amount)
        result: pb.Money = await call(
            f"converting {amount.currency_code} to {currency}",
            self.clients.currency.Convert,
            request,
        )
        return result

    async def frame(self, request: Request) -> dict[str, Any]:
        """What every page shows: session, request id, currencies, cart badge."""
        supported, cart, user = await asyncio.gather(
            call("listing currencies", self.clients.currency.GetSupportedCurrencies, pb.Empty()),
            call(
                "reading the cart",
                self.clients.cart.GetCart,
                pb.GetCartRequest(user_id=cart_id(request)),
            ),
            self._user(request),
        )
        return {
            **self._identity(request),
            "currencies": [c for c in money.SHOP_CURRENCIES if c in supported.currency_codes],
            "cart": cart,
            "cart_size": sum(item.quantity for item in cart.items),
            "user": user,
        }

    def _identity(self, request: Request) -> dict[str, Any]:
        """What the header and footer of any page (an error page too) show."""
        state = request.state
        visitor = visitor_of(request)
        return {
            "session_id": state.session_id,
            "request_id": state.request_id,
            "currency": state.currency,
            "accounts": self.verifier is not None,
            "visitor": visitor,
            "csrf": visitor.csrf if visitor else "",
            "user": None,
        }

    async def _user(self, request: Request) -> upb.User | None:
        """The signed-in visitor's account (for the header's name), None if anonymous
        or unreadable now."""
        visitor = visitor_of(request)
        if visitor is None or self.clients.user is None:
            return None
        return await optional(
            "reading the account", self.clients.user.GetUser, upb.GetUserRequest(), visitor.metadata
        )

    def render(
        self,
        request: Request,
        template: str,
        frame: dict[str, Any],
        status: int = 200,
        **extra: Any,
    ) -> Response:
        """The page ``template`` over ``frame`` (see `frame`) and the page's ``extra``."""
        return self.templates.TemplateResponse(
            request, template, {**frame, **extra}, status_code=status
        )

    async def products(self, ids: Sequence[str]) -> list[pb.Product]:
        """The products of ``ids`` the catalog can read now (the others left out)."""
        found = await asyncio.gather(
            *(
                optional(
                    f"reading product {i}",
                    self.clients.catalog.GetProduct,
                    pb.GetProductRequest(id=i),
                )
                for i in ids
            )
        )
        return [product for product in found if product is not None]

    async def _recommended(self, request: Request, product_ids: list[str]) -> list[pb.Product]:
        reply = await optional(
            "listing recommendations",
            self.clients.recommendation.ListRecommendations,
            pb.ListRecommendationsRequest(
                user_id=request.state.session_id, product_ids=product_ids
            ),
        )
        ids = list(reply.product_ids)[:MAX_RECOMMENDATIONS] if reply else []
        return await self.products(ids)

    # --- pages -------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        frame, products = await asyncio.gather(
            self.frame(request),
            call("listing products", self.clients.catalog.ListProducts, pb.Empty()),
        )
        prices, stock = await asyncio.gather(
            asyncio.gather(
                *(self._convert(p.price_usd, frame["currency"]) for p in products.products)
            ),
            stock_of(self.clients.inventory, [p.id for p in products.products]),
        )
        items = list(zip(products.products, prices, strict=True))
        return self.render(request, "home.html", frame, products=items, stock=stock)

    async def product(self, request: Request) -> Response:
        wanted = product_id(request.path_params["id"])
        product: pb.Product = await call(
            f"reading product {wanted}",
            self.clients.catalog.GetProduct,
            pb.GetProductRequest(id=wanted),
        )
        frame, price, recommended, ads, stock = await asyncio.gather(
            self.frame(request),
            self._convert(product.price_usd, request.state.currency),
            self._recommended(request, [wanted]),
            optional(
                "reading ads",
                self.clients.ad.GetAds,
                pb.AdRequest(context_keys=list(product.categories)),
            ),
            stock_of(self.clients.inventory, [product.id]),
        )
        ad = ads.ads[0] if ads and ads.ads else None
        return self.render(
            request,
            "product.html",
            frame,
            product=product,
            price=price,
            recommended=recommended,
            ad=ad,
            stock=stock.get(product.id),
        )

    async def cart(self, request: Request) -> Response:
        frame = await self.frame(request)
        currency: str = frame["currency"]
        cart: pb.Cart = frame["cart"]
        products = await asyncio.gather(
            *(
                call(
                    f"reading product {item.product_id}",
                    self.clients.catalog.GetProduct,
                    pb.GetProductRequest(id=item.product_id),
                )
                for item in cart.items
            )
        )
        quote, prices, recommended, stock = await asyncio.gather(
            call(
                "quoting shipping",
                self.clients.shipping.GetQuote,
                pb.GetQuoteRequest(address=pb.Address(), items=list(cart.items)),
            ),
            asyncio.gather(*(self._convert(p.price_usd, currency) for p in products)),
            self._recommended(request, [item.product_id for item in cart.items]),
            # sold-out and short lines shown before the checkout refuses them
            stock_of(self.clients.inventory, [item.product_id for item in cart.items]),
        )
        shipping = await self._convert(quote.cost_usd, currency)
        lines = [
            (product, item.quantity, money.multiply(price, item.quantity))
            for product, item, price in zip(products, cart.items, prices, strict=True)
        ]
        total = money.total(currency, [shipping, *(line for _, _, line in lines)])
        this_year = datetime.date.today().year
        metrics.cart_viewed()
        return self.render(
            request,
            "cart.html",
            frame,
            years=range(this_year, this_year + 10),
            lines=lines,
            shipping=shipping,
            total=total,
            recommended=recommended,
            stock=stock,
        )

    async def add_to_cart(self, request: Request) -> Response:
        form = cart_form(await read_form(request))
        try:
            await call(
                f"reading product {form.product_id}",
                self.clients.catalog.GetProduct,
                pb.GetProductRequest(id=form.product_id),
            )
        except ShopError as error:
            if error.status != 404:
                raise
            raise FormError(
                {"product_id": f"no product has the id {quote(form.product_id)}"}
            ) from None
        await call(
            "adding to the cart",
            self.clients.cart.AddItem,
            pb.AddItemRequest(
                user_id=cart_id(request),
                item=pb.CartItem(product_id=form.product_id, quantity=form.quantity),
            ),
        )
        log.info("added to cart", product_id=form.product_id, quantity=form.quantity)
        return RedirectResponse("/cart", status_code=302)

    async def empty_cart(self, request: Request) -> Response:
        await call(
            "emptying the cart",
            self.clients.cart.EmptyCart,
            pb.EmptyCartRequest(user_id=cart_id(request)),
        )
        return RedirectResponse("/", status_code=302)

    async def set_currency(self, request: Request) -> Response:
        supported = await call(
            "listing currencies", self.clients.currency.GetSupportedCurrencies, pb.Empty()
        )
        code = currency_form(await read_form(request), list(supported.currency_codes))
        response = RedirectResponse(_back(request), status_code=302)
        response.set_cookie(CURRENCY_COOKIE, code, max_age=COOKIE_MAX_AGE, samesite="lax")
        return response

    async def checkout(self, request: Request) -> Response:
        form = checkout_form(await read_form(request))
        state = request.state
        placed = pb.PlaceOrderRequest(
            user_id=cart_id(request),
            user_currency=state.currency,
            email=form.email,
            address=pb.Address(
                street_address=form.street_address,
                city=form.city,
                state=form.state,
                country=form.country,
                zip_code=form.zip_code,
            ),
            credit_card=pb.CreditCardInfo(
                credit_card_number=form.credit_card_number,
                credit_card_cvv=form.credit_card_cvv,
                credit_card_expiration_year=form.credit_card_expiration_year,
                credit_card_expiration_month=form.credit_card_expiration_month,
            ),
        )
        try:
            reply: pb.PlaceOrderResponse = await call(
                "placing the order", self.clients.checkout.PlaceOrder, placed
            )
        except ShopError as error:
            if error.status == 422:
                error.title = "Payment declined"
            raise
        order = reply.order
        paid = money.total(
            state.currency,
            [
                order.shipping_cost,
                *(money.multiply(line.cost, line.item.quantity) for line in order.items),
            ],
        )
        log.info("order placed", order_id=order.order_id, items=len(order.items))
        metrics.converted(state.currency)
        frame, products = await asyncio.gather(
            self.frame(request), self.products([line.item.product_id for line in order.items])
        )
        names = {product.id: product.name for product in products}
        return self.render(request, "order.html", frame, order=order, paid=paid, names=names)

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/", status_code=302)
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie(CURRENCY_COOKIE)
        drop_token_cookie(response)
        return response

    # --- errors ------------------------------------------------------------------------

    def guarded(self, handler: Handler) -> Handler:
        """``handler`` whose failures render the error page."""

        async def page(request: Request) -> Response:
            drop = False
            if self.verifier is not None:
                request.state.visitor, drop = await self.verifier.visitor(request)
            response = await self._answer(request, handler)
            if drop:
                drop_token_cookie(response)
            return response

        return page

    async def _answer(self, request: Request, handler: Handler) -> Response:
        """``handler``'s response or its error page; a signed-in visitor's user id is in
        the log context of both, and on the request's span."""
        visitor = visitor_of(request)
        if visitor is None:
            return await self._respond(request, handler)
        trace.get_current_span().set_attribute("app.user.id", visitor.user_id)
        with log.context(user_id=visitor.user_id):
            return await self._respond(request, handler, visitor.csrf)

    async def _respond(self, request: Request, handler: Handler, csrf: str = "") -> Response:
        """``handler``'s response, or the error page of its failure; with a ``csrf``
        token (a signed-in visitor's), a POST without it is refused (403)."""
        try:
            if csrf and request.method == "POST":
                sent = (await read_form(request)).get(CSRF_FIELD, "")
                if not hmac.compare_digest(csrf.encode(), sent.encode("utf-8", "replace")):
                    raise ShopError(
                        403,
                        "Form expired",
                        "This form was not sent from the shop's page, or it has expired."
                        " Reload the page and try again.",
                        chain=[f"{CSRF_FIELD} {'wrong' if sent else 'missing'}"],
                    )
            return await handler(request)
        except ShopError as error:
            return self.error_page(request, error)
        except FormError as error:
            reasons = [f"{field}: {problem}" for field, problem in error.errors.items()]
            return self.error_page(
                request,
                ShopError(
                    error.status,
                    "Please check the form",
                    "Some of what was sent needs a change:",
                    reasons=reasons,
                    chain=reasons,
                ),
            )
        except Exception as error:
            log.error("page failed", exc=error)
            chain = [f"{type(error).__name__}: {error}"]
            message = "Something went wrong on our side."
            return self.error_page(
                request, ShopError(500, "Something went wrong", message, chain=chain)
            )

    def error_page(self, request: Request, error: ShopError) -> Response:
        """The error page of ``error`` with its status; its chain goes to the log and
        to the request's span (an event; clue marks the span an error on a 5xx)."""
        if error.status >= 500:
            log.error("page failed", status=error.status, chain=error.chain)
        else:
            log.info("page refused", status=error.status, chain=error.chain)
        trace.get_current_span().add_event(
            "shop error",
            {
                "http.response.status_code": error.status,
                "shop.error.title": error.title,
                "shop.error.chain": error.chain,
            },
        )
        frame = {
            **self._identity(request),
            "currencies": money.SHOP_CURRENCIES,
            "cart_size": None,
        }
        return self.render(request, "error.html", frame, error.status, error=error)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        path = quote(request.url.path)
        if status == 405:
            message = f"{request.method} is not allowed on this page."
            chain = [f"{request.method} is not allowed on {path}"]
            return self.error_page(
                request, ShopError(405, "Method not allowed", message, chain=chain)
            )
        message = "There is no such page in the shop."
        chain = [f"{request.method} {path}: no such page"]
        return self.error_page(request, ShopError(status, "Not found", message, chain=chain))


def _back(request: Request) -> str:
    """Where a form post returns: the Referer's path when it is this site, else ``/``."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc != request.headers.get("host"):
        return "/"
    return (referer.path or "/") + (f"?{referer.query}" if referer.query else "")


async def healthz(request: Request) -> Response:
    """Plain ``ok`` for load balancers and probes."""
    return PlainTextResponse("ok")


def create_app(clients: Clients, viewer_url: str = "") -> ASGIApp:
    """The shop as an ASGI app, observed by :class:`clue.asgi.ClueMiddleware`;
    ``viewer_url`` is the trace viewer an order's timeline links to (empty: none)."""
    shop = Shop(clients)
    accounts = Accounts(shop)
    orders = OrderPages(shop, viewer_url)
    g = shop.guarded
    routes = [
        Route("/", g(shop.home), methods=["GET"]),
        Route("/product/{id}", g(shop.product), methods=["GET"]),
        Route("/cart", g(shop.cart), methods=["GET"]),
        Route("/cart", g(shop.add_to_cart), methods=["POST"]),
        Route("/cart/empty", g(shop.empty_cart), methods=["POST"]),
        Route("/cart/checkout", g(shop.checkout), methods=["POST"]),
        Route("/setCurrency", g(shop.set_currency), methods=["POST"]),
        Route("/logout", g(shop.logout), methods=["GET"]),
        Route("/signup", g(accounts.signup_page), methods=["GET"]),
        Route("/signup", g(accounts.signup), methods=["POST"]),
        Route("/login", g(accounts.login_page), methods=["GET"]),
        Route("/login", g(accounts.login), methods=["POST"]),
        Route("/account", g(accounts.account), methods=["GET"]),
        Route("/account", g(accounts.rename), methods=["POST"]),
        Route("/account/delete", g(accounts.delete), methods=["POST"]),
        Route("/orders", g(orders.orders), methods=["GET"]),
        Route("/orders/{id}", g(orders.order), methods=["GET"]),
        Route("/orders/{id}/cancel", g(orders.cancel), methods=["POST"]),
        Route(
            "/_healthz",
            healthz,
            methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
        ),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: shop.not_found, 405: shop.not_found},
    )
    return ShopSession(ClueMiddleware(app, skip_paths=QUIET_PATHS))
