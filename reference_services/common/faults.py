"""Fault switches: typed runtime knobs served on a service's admin port.

A service declares its switches once::

    FAULTS = Faults(Rate("failure_rate", "share of charges that fail"))

reads them where the fault applies (``FAULTS.value("failure_rate")``), and
passes ``FAULTS.routes()`` to the admin server. ``GET /faults`` answers the
JSON of every switch; ``GET`` or ``POST /faults?name=value&...`` sets them.
Every name and value is validated first: one bad pair is a 400 naming it and
nothing changes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from reference_services.common.rpc import quote

Value = float | bool | str


class FaultError(ValueError):
    """An unknown switch or a value it does not accept."""


@dataclass
class Switch:
    """One switch: its name, what it does, and its current value."""

    name: str
    doc: str
    value: Value

    def parse(self, text: str) -> Value:
        """The value ``text`` stands for, or FaultError."""
        raise NotImplementedError

    @property
    def off(self) -> Value:
        """The harmless value."""
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        """The switch as JSON-ready data."""
        return {"value": self.value, "accepts": self.accepts, "doc": self.doc}

    @property
    def accepts(self) -> str:
        """What values the switch accepts, for humans."""
        raise NotImplementedError


def _number(name: str, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise FaultError(f"{name}: {quote(text)} is not a number") from None
    if not math.isfinite(number):
        raise FaultError(f"{name}: {quote(text)} is not a finite number")
    return number


@dataclass
class Rate(Switch):
    """A probability between 0 and 1 (0: never, 1: always)."""

    value: Value = 0.0

    @property
    def off(self) -> Value:
        return 0.0

    def parse(self, text: str) -> Value:
        number = _number(self.name, text)
        if not 0.0 <= number <= 1.0:
            raise FaultError(f"{self.name}: {quote(text)} is not between 0 and 1")
        return number

    @property
    def accepts(self) -> str:
        return "a number between 0 and 1"


@dataclass
class Millis(Switch):
    """A duration in milliseconds, 0 or more."""

    value: Value = 0.0

    @property
    def off(self) -> Value:
        return 0.0

    def parse(self, text: str) -> Value:
        number = _number(self.name, text)
        if not 0.0 <= number <= 60_000.0:
            raise FaultError(f"{self.name}: {quote(text)} is not between 0 and 60000 milliseconds")
        return number

    @property
    def accepts(self) -> str:
        return "milliseconds between 0 and 60000"


_ON = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


@dataclass
class Flag(Switch):
    """On or off."""

    value: Value = False

    @property
    def off(self) -> Value:
        return False

    def parse(self, text: str) -> Value:
        try:
            return _ON[text.strip().lower()]
        except KeyError:
            raise FaultError(f"{self.name}: {quote(text)} is not on or off") from None

    @property
    def accepts(self) -> str:
        return "on or off"


@dataclass
class Choice(Switch):
    """One of a fixed set of words, or empty (off)."""

    value: Value = ""
    choices: tuple[str, ...] = ()

    @property
    def off(self) -> Value:
        return ""

    def parse(self, text: str) -> Value:
        word = text.strip()
        if word and word not in self.choices:
            raise FaultError(f"{self.name}: {quote(word)} is not one of {self.accepts}")
        return word

    @property
    def accepts(self) -> str:
        return "empty (off) or one of " + ", ".join(self.choices)


class Faults:
    """The switches of one service."""

    def __init__(self, *switches: Switch) -> None:
        self.switches = {s.name: s for s in switches}

    def value(self, name: str) -> Value:
        """The current value of switch ``name``."""
        return self.switches[name].value

    def rate(self, name: str) -> float:
        """A rate switch's value."""
        return float(self.switches[name].value)

    def on(self, name: str) -> bool:
        """Whether a flag switch is on."""
        return bool(self.switches[name].value)

    def choice(self, name: str) -> str:
        """A choice switch's word ("" when off)."""
        return str(self.switches[name].value)

    def roll(self, name: str) -> bool:
        """True with the probability held by rate switch ``name``."""
        rate = self.rate(name)
        return rate > 0.0 and random.random() < rate

    def set(self, changes: Mapping[str, str]) -> dict[str, Value]:
        """Validate every change, then apply them all; FaultError changes nothing."""
        parsed: dict[str, Value] = {}
        for name, text in changes.items():
            switch = self.switches.get(name)
            if switch is None:
                known = ", ".join(sorted(self.switches)) or "none"
                raise FaultError(f"unknown fault switch {quote(name)} (known: {known})")
            parsed[name] = switch.parse(text)
        for name, value in parsed.items():
            self.switches[name].value = value
        return parsed

    def reset(self) -> None:
        """Turn every switch back to its harmless default."""
        for switch in self.switches.values():
            switch.value = switch.off

    def describe(self) -> dict[str, dict[str, object]]:
        """Every switch as JSON-ready data."""
        return {name: switch.describe() for name, switch in self.switches.items()}

    def routes(self) -> list[BaseRoute]:
        """The admin route ``/faults`` (GET reads, GET/POST with a query sets)."""
        return [Route("/faults", self._endpoint, methods=["GET", "POST"], name="faults")]

    async def _endpoint(self, request: Request) -> JSONResponse:
        changes = dict(request.query_params)
        if len(changes) != len(request.query_params.multi_items()):
            return JSONResponse({"error": "each switch may be given once"}, status_code=400)
        try:
            self.set(changes)
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.describe())
