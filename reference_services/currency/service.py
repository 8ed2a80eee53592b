"""CurrencyService over gRPC."""

from __future__ import annotations

from opentelemetry import trace

from reference_services.common.rpc import Context, rpc
from reference_services.common.runtime import Entry, Wiring
from reference_services.currency import rates
from reference_services.protos import hipstershop_pb2 as pb
from reference_services.protos import hipstershop_pb2_grpc as pb_grpc


class Currency(pb_grpc.CurrencyServiceServicer):
    """Lists supported currencies and converts amounts between them."""

    @rpc
    async def GetSupportedCurrencies(
        self, request: pb.Empty, context: Context
    ) -> pb.GetSupportedCurrenciesResponse:
        """Every currency code Convert accepts."""
        return pb.GetSupportedCurrenciesResponse(currency_codes=rates.supported())

    @rpc
    async def Convert(self, request: pb.CurrencyConversionRequest, context: Context) -> pb.Money:
        """The amount in ``to_code``; INVALID_ARGUMENT for a bad amount or code."""
        source = getattr(request, "from")
        converted = rates.convert(source, request.to_code)  # validates both codes first
        span = trace.get_current_span()
        span.set_attribute("app.currency.from", source.currency_code)
        span.set_attribute("app.currency.to", request.to_code)
        return converted


async def build() -> Wiring:
    """The currency servicer."""
    return Wiring(servicers=[(pb_grpc.add_CurrencyServiceServicer_to_server, Currency())])


ENTRY = Entry("currency", build)
