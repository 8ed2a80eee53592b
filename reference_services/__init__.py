"""The boutique: reference e-commerce services instrumented with clue."""
