"""Samplers: the adaptive (rate-targeting) sampler and the standard ones named by env."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from clue.telemetry.forked import in_child

MIN_PROBABILITY = 1e-4
_TRACE_ID_LIMIT = (1 << 64) - 1
_DROP = SamplingResult(Decision.DROP, None, None)


class _RateTargetingSampler(Sampler):
    """Root sampler: samples a share of new traces that keeps them under a rate."""

    def __init__(
        self, max_sampled_per_second: float, sample_size: int, clock: Callable[[], float]
    ) -> None:
        self._max = max_sampled_per_second
        self._sample_size = sample_size
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._window_start = clock()
        self._probability = 1.0
        self._bound = _TRACE_ID_LIMIT + 1
        self._decided = threading.local()
        in_child(self._renew_lock)

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it at the fork

    @property
    def probability(self) -> float:
        return self._probability

    def _estimate(self) -> None:
        now = self._clock()
        elapsed = now - self._window_start
        rate = self._count / elapsed if elapsed > 0 else math.inf
        self._probability = min(1.0, max(MIN_PROBABILITY, self._max / rate))
        self._bound = round(self._probability * (_TRACE_ID_LIMIT + 1))
        self._count = 0
        self._window_start = now

    def decide(self, trace_id: int) -> bool:
        """Count one new trace and say whether it is sampled."""
        with self._lock:
            self._count += 1
            if self._count >= self._sample_size:
                self._estimate()
            bound = self._bound
        return trace_id & _TRACE_ID_LIMIT < bound

    @contextmanager
    def decided(self) -> Iterator[None]:
        """Within the block, this thread's next decision is "sampled", without being counted
        (the trace was counted and sampled by :meth:`decide` already)."""
        self._decided.sampled = True
        try:
            yield
        finally:
            self._decided.sampled = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if getattr(self._decided, "sampled", False):
            self._decided.sampled = False
        elif not self.decide(trace_id):
            return _DROP
        state = get_current_span(parent_context).get_span_context().trace_state
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)

    def get_description(self) -> str:
        return f"RateTargeting{{max={self._max}/s,sample_size={self._sample_size}}}"


class AdaptiveSampler(ParentBased):
    """Parent-based sampler that keeps new traces under ``max_sampled_per_second``.

    A span with a parent follows the parent's decision. For new traces the
    sampler counts requests and, every ``sample_size`` of them, re-estimates the
    request rate and sets the sampling probability to
    ``max_sampled_per_second / rate``, clamped to ``[1e-4, 1]``. Everything is
    sampled until the first estimate. Decisions hash the trace id, so services
    sharing a probability agree. ``clock`` (seconds, monotonic) is for tests.
    """

    def __init__(
        self,
        max_sampled_per_second: float = 2.0,
        sample_size: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_sampled_per_second, bool) or not isinstance(
            max_sampled_per_second, int | float
        ):
            raise ValueError(
                f"max_sampled_per_second must be a number, got {max_sampled_per_second!r}"
            )
        if not 0 < max_sampled_per_second < math.inf:
            raise ValueError(
                f"max_sampled_per_second must be positive and finite, got {max_sampled_per_second}"
            )
        if type(sample_size) is not int or sample_size < 1:
            raise ValueError(f"sample_size must be a positive integer, got {sample_size!r}")
        self._root_sampler = _RateTargetingSampler(
            float(max_sampled_per_second), sample_size, clock
        )
        super().__init__(self._root_sampler)

    @property
    def probability(self) -> float:
        """The probability currently applied to new traces."""
        return self._root_sampler.probability

    @property
    def root(self) -> _RateTargetingSampler:
        """The sampler of new traces (what ``clue``'s fast unsampled spans ask)."""
        return self._root_sampler

    def get_description(self) -> str:
        return f"AdaptiveSampler{{{self._root_sampler.get_description()}}}"


_RATIO_SAMPLERS: dict[str, Callable[[float], Sampler]] = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": lambda ratio: ParentBased(TraceIdRatioBased(ratio)),
}
_FIXED_SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": ParentBased(ALWAYS_ON),
    "parentbased_always_off": ParentBased(ALWAYS_OFF),
}
STANDARD_SAMPLERS = (*_FIXED_SAMPLERS, *_RATIO_SAMPLERS)


def _ratio(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = math.nan
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a ratio between 0 and 1")
    return ratio


def sampler_from_env() -> Sampler | None:
    """The standard sampler named by ``OTEL_TRACES_SAMPLER`` (None when unset)."""
    raw = os.environ.get("OTEL_TRACES_SAMPLER", "")
    name = raw.strip().lower()
    if not name:
        return None
    if name in _FIXED_SAMPLERS:
        return _FIXED_SAMPLERS[name]
    if name in _RATIO_SAMPLERS:
        return _RATIO_SAMPLERS[name](_ratio(os.environ.get("OTEL_TRACES_SAMPLER_ARG")))
    raise ValueError(
        f"OTEL_TRACES_SAMPLER={raw!r} is not a supported sampler: use one of "
        f"{', '.join(STANDARD_SAMPLERS)} (or unset it for clue's adaptive sampler)"
    )
