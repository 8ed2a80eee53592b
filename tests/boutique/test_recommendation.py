"""Recommendations from the live catalog, and the leak switch."""

from __future__ import annotations

import asyncio

import grpc
import httpx

from reference_services.productcatalog import service as productcatalog
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from reference_services.recommendation import service as recommendation
from reference_services.recommendation.pick import recommend
from tests.boutique.conftest import rpc_error, serving, stub_for


def test_recommend_excludes_and_caps() -> None:
    ids = [str(i) for i in range(9)]
    for _ in range(20):
        picked = recommend(ids, ["0", "1"])
        assert len(picked) == 5 == len(set(picked)) and not {"0", "1"} & set(picked)
    assert sorted(recommend(ids, ids[:7])) == ["7", "8"]
    assert recommend(ids, ids) == []


async def test_recommendations_over_grpc_and_the_leak() -> None:
    catalog_wiring = await productcatalog.build(productcatalog.Config())
    async with serving("productcatalog", catalog_wiring) as catalog:
        wiring = await recommendation.build(recommendation.Config(catalog.address))
        async with (
            serving("recommendation", wiring) as service,
            stub_for(service, pb_grpc.RecommendationServiceStub) as stub,
            httpx.AsyncClient(base_url=service.admin.url) as admin,
        ):
            asked = ["OLJCESPC7Z", "66VCHSJNUP"]
            reply = await stub.ListRecommendations(
                pb.ListRecommendationsRequest(user_id="u", product_ids=asked)
            )
            assert len(reply.product_ids) == 5 and not set(asked) & set(reply.product_ids)

            servicer = wiring.servicers[0][1]
            assert isinstance(servicer, recommendation.Recommendation)
            assert (await admin.post("/faults", params={"leak": "on"})).status_code == 200
            for _ in range(3):
                await stub.ListRecommendations(pb.ListRecommendationsRequest(user_id="u"))
            assert len(servicer.cache.entries) == 3  # it only grows
            assert (await admin.post("/faults", params={"leak": "off"})).status_code == 200
            await stub.ListRecommendations(pb.ListRecommendationsRequest(user_id="u"))
            assert len(servicer.cache.entries) == 3

            health = (await admin.get("/healthz")).json()
            assert health["status"] == {"productcatalog": "OK"}
            await catalog.stop()
            error = await rpc_error(
                stub.ListRecommendations(pb.ListRecommendationsRequest(user_id="u"))
            )
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            assert error.details().startswith("product catalog:")


async def test_the_leak_is_found_in_the_heap_profile() -> None:
    catalog_wiring = await productcatalog.build(productcatalog.Config())
    async with serving("productcatalog", catalog_wiring) as catalog:
        wiring = await recommendation.build(recommendation.Config(catalog.address))
        async with (
            serving("recommendation", wiring) as service,
            stub_for(service, pb_grpc.RecommendationServiceStub) as stub,
            httpx.AsyncClient(base_url=service.admin.url, timeout=30) as admin,
        ):
            await admin.post("/faults", params={"leak": "on"})
            profile = asyncio.create_task(
                admin.get("/debug/pprof/heap", params={"seconds": "1", "format": "text"})
            )
            await asyncio.sleep(0.2)
            while not profile.done():
                await stub.ListRecommendations(pb.ListRecommendationsRequest(user_id="u"))
            table = (await profile).text
    top = table.split("function (file:line)\n", 1)[1].splitlines()[:3]
    assert any("LeakyCache.remember (service.py:" in line for line in top), table
