"""PlaceOrder through the boutique's gRPC services, bare gRPC vs wired with clue.

The seven services a checkout touches run in this process on loopback, with
their real SQLite stores, three times: bare ``grpc.aio`` servers and channels
(the baseline), then clue's full stack (interceptors on every server and
channel, health, admin port) with the default adaptive sampler, then with
every trace sampled. Spans go to an exporter that drops them, so the cost
measured is clue's and OpenTelemetry's, not the network's. Eight concurrent
shoppers each fill a cart (two AddItem) and place the order, for
``--seconds`` per run; the three runs are repeated ``--rounds`` times, and
each ratio is the median over rounds of the run's throughput against the bare
run of the same round (drift of the machine hits the three runs of a round
alike). Goals: clue keeps at least 70 % of the bare throughput with the
adaptive sampler and 50 % with every trace sampled.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc.aio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _goal import goal

import clue
from clue import log
from reference_services.cart import service as cart
from reference_services.cart.store import open_cart_store
from reference_services.checkout import service as checkout
from reference_services.checkout.orders import OrderStore
from reference_services.common.database import SQLite
from reference_services.common.runtime import SERVICE_LOG_WRITE_DELAY, GrpcService, Wiring
from reference_services.currency import service as currency
from reference_services.email import service as email
from reference_services.payment import service as payment
from reference_services.productcatalog import service as productcatalog
from reference_services.productcatalog.catalog import Catalog
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.shipping import service as shipping

SHOPPERS = 8
CARD = pb.CreditCardInfo(
    credit_card_number="4432801561520454",
    credit_card_cvv=672,
    credit_card_expiration_year=dt.date.today().year + 1,
    credit_card_expiration_month=1,
)
ADDRESS = pb.Address(
    street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code=62701
)


class DropSpans(SpanExporter):
    """Accepts spans and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def bare_shop(data: Path) -> tuple[list[grpc.aio.Server], str, str, list[Any]]:
    """Plain grpc.aio servers and channels: the baseline."""
    servers: list[grpc.aio.Server] = []
    closers: list[Any] = []

    async def serve(add: Any, servicer: object) -> str:
        server = grpc.aio.server()
        add(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    def channel(address: str) -> grpc.aio.Channel:
        ch = grpc.aio.insecure_channel(address)
        closers.append(ch)
        return ch

    no_faults = productcatalog.faults()
    addr = {
        "catalog": await serve(
            pb_grpc.add_ProductCatalogServiceServicer_to_server,
            productcatalog.ProductCatalog(Catalog.from_file(), no_faults),
        ),
        "currency": await serve(pb_grpc.add_CurrencyServiceServicer_to_server, currency.Currency()),
        "cart": await serve(
            pb_grpc.add_CartServiceServicer_to_server,
            cart.Cart(open_cart_store(f"sqlite:///{data / 'cart.db'}"), cart.faults()),
        ),
        "shipping": await serve(pb_grpc.add_ShippingServiceServicer_to_server, shipping.Shipping()),
        "payment": await serve(
            pb_grpc.add_PaymentServiceServicer_to_server, payment.Payment(payment.faults())
        ),
        "email": await serve(pb_grpc.add_EmailServiceServicer_to_server, email.Email()),
    }
    downstream = checkout.Downstream(
        cart=pb_grpc.CartServiceStub(channel(addr["cart"])),
        catalog=pb_grpc.ProductCatalogServiceStub(channel(addr["catalog"])),
        currency=pb_grpc.CurrencyServiceStub(channel(addr["currency"])),
        shipping=pb_grpc.ShippingServiceStub(channel(addr["shipping"])),
        payment=pb_grpc.PaymentServiceStub(channel(addr["payment"])),
        email=pb_grpc.EmailServiceStub(channel(addr["email"])),
    )
    orders = OrderStore(SQLite(data / "orders.db"))
    checkout_addr = await serve(
        pb_grpc.add_CheckoutServiceServicer_to_server, checkout.Checkout(downstream, orders)
    )
    return servers, addr["cart"], checkout_addr, closers


async def clue_shop(data: Path) -> tuple[list[GrpcService], str, str]:
    """The same services through the boutique runtime: clue's full stack."""
    services: list[GrpcService] = []

    async def start(name: str, wiring: Wiring) -> str:
        service = GrpcService(name, wiring, host="127.0.0.1", grace=1.0)
        await service.start()
        services.append(service)
        return service.address

    catalog = await start("productcatalog", await productcatalog.build(productcatalog.Config()))
    config = checkout.Config(
        cart_addr=await start("cart", await cart.build(cart.Config(f"sqlite:///{data}/cart.db"))),
        catalog_addr=catalog,
        currency_addr=await start("currency", await currency.build()),
        shipping_addr=await start("shipping", await shipping.build()),
        payment_addr=await start("payment", await payment.build()),
        email_addr=await start("email", await email.build()),
        order_store=f"sqlite:///{data}/orders.db",
    )
    checkout_addr = await start("checkout", await checkout.build(config))
    return services, config.cart_addr, checkout_addr


async def shop(cart_addr: str, checkout_addr: str, seconds: float) -> list[float]:
    """Shoppers filling carts and placing orders; PlaceOrder latencies in seconds."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with (
        grpc.aio.insecure_channel(cart_addr) as cart_channel,
        grpc.aio.insecure_channel(checkout_addr) as checkout_channel,
    ):
        carts = pb_grpc.CartServiceStub(cart_channel)
        orders = pb_grpc.CheckoutServiceStub(checkout_channel)

        async def shopper() -> None:
            while time.monotonic() < deadline:
                user = str(uuid.uuid4())
                for product, quantity in (("OLJCESPC7Z", 2), ("6E92ZMYYFZ", 1)):
                    item = pb.CartItem(product_id=product, quantity=quantity)
                    await carts.AddItem(pb.AddItemRequest(user_id=user, item=item))
                request = pb.PlaceOrderRequest(
                    user_id=user,
                    user_currency="EUR",
                    address=ADDRESS,
                    email="bench@example.com",
                    credit_card=CARD,
                )
                started = time.perf_counter()
                await orders.PlaceOrder(request)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(shopper() for _ in range(SHOPPERS)))
    return latencies


def summary(label: str, latencies: list[float], seconds: float) -> float:
    rate = len(latencies) / seconds
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{label:>16}: {rate:7.1f} orders/s  p50 {cuts[49] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  ({len(latencies)} orders)",
        flush=True,
    )
    return rate


async def run_bare(seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        servers, cart_addr, checkout_addr, channels = await bare_shop(Path(tmp))
        await shop(cart_addr, checkout_addr, 1.0)  # warm-up
        rate = summary("bare gRPC", await shop(cart_addr, checkout_addr, seconds), seconds)
        for channel in channels:
            await channel.close(None)
        await asyncio.gather(*(s.stop(None) for s in servers))
    return rate


async def run_clue(label: str, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        services, cart_addr, checkout_addr = await clue_shop(Path(tmp))
        await shop(cart_addr, checkout_addr, 1.0)  # warm-up
        rate = summary(label, await shop(cart_addr, checkout_addr, seconds), seconds)
        await asyncio.gather(*(s.stop() for s in services))
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three runs")
    args = parser.parse_args()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    # as the boutique's service processes configure it
    log.configure(outputs=[log.Output(devnull, format="json")], write_delay=SERVICE_LOG_WRITE_DELAY)
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    print(
        f"{SHOPPERS} shoppers, {args.rounds} rounds of {args.seconds:g} s per run, SQLite stores",
        flush=True,
    )
    adaptive: list[float] = []
    always: list[float] = []
    for _ in range(args.rounds):  # interleaved: drift of the machine hits all three alike
        bare = asyncio.run(run_bare(args.seconds))
        clue.configure("boutique-bench", span_exporter=DropSpans(), exporter="none")
        adaptive.append(asyncio.run(run_clue("clue adaptive", args.seconds)) / bare)
        clue.configure(
            "boutique-bench", span_exporter=DropSpans(), exporter="none", sampler=ALWAYS_ON
        )
        always.append(asyncio.run(run_clue("clue always_on", args.seconds)) / bare)
        clue.shutdown()
    goal(
        "boutique.services.placeorder_rate_ratio_adaptive",
        statistics.median(adaptive),
        ">=",
        0.7,
    )
    goal("boutique.services.placeorder_rate_ratio_always_on", statistics.median(always), ">=", 0.5)


if __name__ == "__main__":
    main()
