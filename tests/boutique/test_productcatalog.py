"""The catalog: data, lookup, search, bad input and its fault switches on the admin port."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import httpx

from reference_services.productcatalog import service as productcatalog
from reference_services.productcatalog.catalog import DATA_FILE, Catalog
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.conftest import rpc_error, serving, stub_for

IDS = [
    "OLJCESPC7Z",
    "66VCHSJNUP",
    "1YMWWN1N4O",
    "L9ECAV7KIM",
    "2ZYFJ3GM2N",
    "0PUK6V6EV0",
    "LS4PSXUNUM",
    "9SIQT8TOJO",
    "6E92ZMYYFZ",
]


def test_catalog_data() -> None:
    catalog = Catalog.from_file()
    assert [p.id for p in catalog.products] == IDS
    salt = catalog.get("LS4PSXUNUM")
    assert salt is not None and salt.name == "Salt & Pepper Shakers"
    assert salt.picture == "/static/img/products/salt-pepper-shakers.svg"
    assert (salt.price_usd.currency_code, salt.price_usd.units, salt.price_usd.nanos) == (
        "USD",
        18,
        490_000_000,
    )
    for product in catalog.products:
        slug = product.name.lower().replace(" & ", "-").replace(" ", "-")
        assert product.picture == f"/static/img/products/{slug}.svg"
        assert product.description.endswith(".") and product.categories
    assert list(catalog.get("66VCHSJNUP").categories) == ["clothing", "tops"]  # type: ignore[union-attr]


def test_search_is_a_case_insensitive_substring_of_name_or_description() -> None:
    catalog = Catalog.from_file()
    assert [p.name for p in catalog.search("GLASS")] == ["Sunglasses", "Bamboo Glass Jar"]
    assert [p.name for p in catalog.search("coffee")] == ["Bamboo Glass Jar", "Mug"]
    assert catalog.search("no such thing") == []


async def test_catalog_over_grpc_with_faults(tmp_path: Path) -> None:
    data = tmp_path / "products.json"
    data.write_text(DATA_FILE.read_text())
    wiring = await productcatalog.build(productcatalog.Config(data))
    async with (
        serving("productcatalog", wiring) as service,
        stub_for(service, pb_grpc.ProductCatalogServiceStub) as stub,
        httpx.AsyncClient(base_url=service.admin.url) as admin,
    ):
        listed = await stub.ListProducts(pb.Empty())
        assert [p.id for p in listed.products] == IDS
        mug = await stub.GetProduct(pb.GetProductRequest(id="6E92ZMYYFZ"))
        assert mug.name == "Mug"
        found = await stub.SearchProducts(pb.SearchProductsRequest(query="loaf"))
        assert [p.id for p in found.results] == ["L9ECAV7KIM"]

        error = await rpc_error(stub.GetProduct(pb.GetProductRequest(id="NOPE")))
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert error.details() == "no product with id 'NOPE'"
        error = await rpc_error(stub.GetProduct(pb.GetProductRequest(id="")))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "id must not be empty"
        error = await rpc_error(stub.SearchProducts(pb.SearchProductsRequest(query="x" * 300)))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT

        # the CPU bug re-reads the data file on every request: an edit shows up at once
        records = json.loads(data.read_text())
        records[-1]["name"] = "Giant Mug"
        data.write_text(json.dumps(records))
        assert (await stub.GetProduct(pb.GetProductRequest(id="6E92ZMYYFZ"))).name == "Mug"
        reply = await admin.post("/faults", params={"cpu_bug": "on"})
        assert reply.status_code == 200 and reply.json()["cpu_bug"]["value"] is True
        assert (await stub.GetProduct(pb.GetProductRequest(id="6E92ZMYYFZ"))).name == "Giant Mug"

        # bad switch values are a 400 and change nothing
        for bad in (
            {"extra_latency_ms": "-5", "cpu_bug": "off"},
            {"cpu_bug": "maybe", "extra_latency_ms": "10"},
            {"nope": "1", "extra_latency_ms": "10"},
        ):
            reply = await admin.post("/faults", params=bad)
            assert reply.status_code == 400, bad
            assert next(iter(bad)) in reply.json()["error"]
        state = (await admin.get("/faults")).json()
        assert state["extra_latency_ms"]["value"] == 0 and state["cpu_bug"]["value"] is True

        assert (await admin.get("/faults", params={"extra_latency_ms": "150"})).status_code == 200
        started = time.monotonic()
        await stub.GetProduct(pb.GetProductRequest(id="6E92ZMYYFZ"))
        assert time.monotonic() - started >= 0.15  # the injected delay is a lower bound


async def test_the_cpu_bug_is_found_in_the_cpu_profile() -> None:
    wiring = await productcatalog.build(productcatalog.Config())
    async with (
        serving("productcatalog", wiring) as service,
        stub_for(service, pb_grpc.ProductCatalogServiceStub) as stub,
        httpx.AsyncClient(base_url=service.admin.url, timeout=30) as admin,
    ):
        await admin.post("/faults", params={"cpu_bug": "on"})
        profile = asyncio.create_task(
            admin.get("/debug/pprof/profile", params={"seconds": "1", "format": "collapsed"})
        )
        await asyncio.sleep(0.2)
        request = pb.GetProductRequest(id="6E92ZMYYFZ")
        while not profile.done():
            await asyncio.gather(*(stub.GetProduct(request) for _ in range(20)))
        stacks = (await profile).text
    burning = [line for line in stacks.splitlines() if "Catalog.from_file" in line]
    assert burning, stacks
