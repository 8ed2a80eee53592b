"""AdService over gRPC, with its failure-rate switch."""

from __future__ import annotations

from opentelemetry import trace

from clue import log
from reference_services.ad.ads import ads_for
from reference_services.common import fields
from reference_services.common.faults import Faults, Rate
from reference_services.common.rpc import Context, rpc, unavailable
from reference_services.common.runtime import Entry, Wiring
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc

MAX_KEYS = 20
MAX_KEY_LENGTH = 64


def faults() -> Faults:
    """The ad switch: a share of requests fails."""
    return Faults(Rate("failure_rate", "share of ad requests that fail"))


class AdServer(pb_grpc.AdServiceServicer):
    """Serves text ads matched to context keys."""

    def __init__(self, switches: Faults) -> None:
        self.faults = switches

    @rpc
    async def GetAds(self, request: pb.AdRequest, context: Context) -> pb.AdResponse:
        """The ads of each category key, or two random ads."""
        fields.count(request.context_keys, "context_keys", MAX_KEYS)
        for i, key in enumerate(request.context_keys):
            fields.text(key, f"context_keys[{i}]", MAX_KEY_LENGTH, required=False)
        if self.faults.roll("failure_rate"):
            log.error("ad request failed", reason="injected fault failure_rate")
            raise unavailable("ads unavailable (injected fault failure_rate)")
        ads = ads_for(request.context_keys)
        span = trace.get_current_span()
        span.set_attribute("app.ads.context_keys", list(request.context_keys))
        span.set_attribute("app.ads.count", len(ads))
        return pb.AdResponse(ads=ads)


async def build() -> Wiring:
    """The ad servicer and its switch."""
    switches = faults()
    return Wiring(
        servicers=[(pb_grpc.add_AdServiceServicer_to_server, AdServer(switches))],
        faults=switches,
    )


ENTRY = Entry("ad", build)
