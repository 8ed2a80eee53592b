"""Shared formatting of benchmark goal lines."""

from __future__ import annotations


def goal(name: str, value: float, op: str, target: float, unit: str = "") -> str:
    """Print and return ``goal <name> value=<x> target=<op><y> pass|fail``."""
    ok = {"<=": value <= target, "<": value < target, ">=": value >= target, ">": value > target}[op]
    line = f"goal {name} value={value:.4g}{unit} target={op}{target:g}{unit} {'pass' if ok else 'fail'}"
    print(line, flush=True)
    return line
