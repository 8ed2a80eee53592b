"""The ads and how they are chosen from context keys."""

from __future__ import annotations

import random
from collections.abc import Iterable

from reference_services.protos import hipstershop_pb2 as pb


def _ad(product_id: str, text: str) -> pb.Ad:
    return pb.Ad(redirect_url=f"/product/{product_id}", text=text)


ADS_BY_CATEGORY: dict[str, list[pb.Ad]] = {
    "clothing": [_ad("66VCHSJNUP", "Tank top in washed indigo, cool all summer long")],
    "accessories": [_ad("1YMWWN1N4O", "A steel watch that keeps good time and good company")],
    "footwear": [_ad("L9ECAV7KIM", "Suede loafers, stitched by hand, made for walking")],
    "hair": [_ad("2ZYFJ3GM2N", "Salon-smooth hair at home: our ionic hairdryer")],
    "decor": [_ad("0PUK6V6EV0", "Brass candle holder: light up long evenings")],
    "kitchen": [
        _ad("9SIQT8TOJO", "Bamboo glass jars keep beans fresh and shelves tidy"),
        _ad("6E92ZMYYFZ", "A big mug for a big morning coffee"),
    ],
}
RANDOM_ADS = 2


def ads_for(context_keys: Iterable[str]) -> list[pb.Ad]:
    """The ads of each known key (case-insensitive, each key once); two random ads if none."""
    chosen: list[pb.Ad] = []
    for key in dict.fromkeys(k.strip().lower() for k in context_keys):
        chosen += ADS_BY_CATEGORY.get(key, [])
    if chosen:
        return chosen
    every = [ad for ads in ADS_BY_CATEGORY.values() for ad in ads]
    return random.sample(every, RANDOM_ADS)
