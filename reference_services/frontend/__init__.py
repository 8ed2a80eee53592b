"""The boutique's web shop: server-rendered pages over the gRPC services."""
