"""Shared runtime of the boutique's gRPC services: config, money, faults, server wiring."""
