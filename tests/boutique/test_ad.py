"""Ads by context key, random ads, bad input and the failure switch."""

from __future__ import annotations

import grpc

from reference_services.ad import service as ad
from reference_services.ad.ads import ADS_BY_CATEGORY, ads_for
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc
from tests.boutique.conftest import rpc_error, serving, stub_for


def urls(ads: list[pb.Ad]) -> list[str]:
    return [a.redirect_url for a in ads]


def test_ads_by_category() -> None:
    assert urls(ads_for(["clothing"])) == ["/product/66VCHSJNUP"]
    assert urls(ads_for(["Accessories"])) == ["/product/1YMWWN1N4O"]
    assert urls(ads_for(["kitchen"])) == ["/product/9SIQT8TOJO", "/product/6E92ZMYYFZ"]
    assert urls(ads_for(["footwear", "hair", "decor", "footwear"])) == [
        "/product/L9ECAV7KIM",
        "/product/2ZYFJ3GM2N",
        "/product/0PUK6V6EV0",
    ]


def test_no_key_or_no_match_gives_two_random_ads() -> None:
    every = {a.redirect_url for ads in ADS_BY_CATEGORY.values() for a in ads}
    for keys in ([], ["gardening"]):
        picked = urls(ads_for(keys))
        assert len(picked) == 2 == len(set(picked)) and set(picked) <= every


async def test_ads_over_grpc() -> None:
    async with (
        serving("ad", await ad.build()) as service,
        stub_for(service, pb_grpc.AdServiceStub) as stub,
    ):
        reply = await stub.GetAds(pb.AdRequest(context_keys=["footwear"]))
        assert urls(list(reply.ads)) == ["/product/L9ECAV7KIM"] and reply.ads[0].text
        error = await rpc_error(stub.GetAds(pb.AdRequest(context_keys=["k"] * 21)))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        error = await rpc_error(stub.GetAds(pb.AdRequest(context_keys=["x" * 65])))
        assert error.details() == "context_keys[0] is 65 characters long, more than 64"

        service.wiring.faults.set({"failure_rate": "1.0"})  # type: ignore[union-attr]
        error = await rpc_error(stub.GetAds(pb.AdRequest()))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
