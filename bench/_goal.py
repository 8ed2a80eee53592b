"""Shared formatting of benchmark goal and info lines."""

from __future__ import annotations


def goal(name: str, value: float, op: str, target: float, unit: str = "") -> str:
    """Print and return ``goal <name> value=<x> target=<op><y> pass|fail``."""
    checks = {
        "<=": value <= target,
        "<": value < target,
        ">=": value >= target,
        ">": value > target,
    }
    verdict = "pass" if checks[op] else "fail"
    line = f"goal {name} value={value:.4g}{unit} target={op}{target:g}{unit} {verdict}"
    print(line, flush=True)
    return line


def info(name: str, **values: float) -> str:
    """Print and return ``info <name> <key>=<x> ...``: a figure shown beside the goals, with
    no target."""
    fields = " ".join(f"{key}={value:.4g}" for key, value in values.items())
    line = f"info {name} {fields}"
    print(line, flush=True)
    return line
