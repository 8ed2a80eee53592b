"""The adaptive sampler and the standard samplers named by OTEL_TRACES_SAMPLER."""

from __future__ import annotations

import random
import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from clue.telemetry import AdaptiveSampler
from clue.telemetry.sampler import MIN_PROBABILITY, sampler_from_env


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sampled(sampler: AdaptiveSampler, trace_id: int, parent: object = None) -> bool:
    result = sampler.should_sample(parent, trace_id, "request")  # type: ignore[arg-type]
    return result.decision == Decision.RECORD_AND_SAMPLE


def _parent(sampled: bool) -> object:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span = NonRecordingSpan(SpanContext(1, 2, is_remote=True, trace_flags=flags))
    return trace.set_span_in_context(span)


def test_everything_is_sampled_until_the_first_estimate() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=2, sample_size=10, clock=clock)
    rng = random.Random(1)
    decisions = []
    for _ in range(9):  # 1000 requests/s, far above the target, but no estimate yet
        clock.now += 0.001
        decisions.append(_sampled(sampler, rng.getrandbits(128)))
    assert all(decisions)
    assert sampler.probability == 1.0


@pytest.mark.parametrize(("rate", "seconds"), [(10.0, 1000), (100.0, 500), (500.0, 200)])
def test_sampled_traces_converge_to_the_target_rate(rate: float, seconds: int) -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=2.0, sample_size=10, clock=clock)
    rng = random.Random(42)
    sampled = 0
    for _ in range(int(rate * seconds)):
        clock.now += 1 / rate
        sampled += _sampled(sampler, rng.getrandbits(128))
    assert sampler.probability == pytest.approx(2.0 / rate)
    assert sampled / seconds == pytest.approx(2.0, rel=0.1)


def test_low_traffic_is_sampled_entirely() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=2.0, sample_size=10, clock=clock)
    rng = random.Random(3)
    for _ in range(100):  # one request per second: under the target
        clock.now += 1.0
        assert _sampled(sampler, rng.getrandbits(128))
    assert sampler.probability == 1.0


def test_probability_is_clamped_and_recovers_when_traffic_drops() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=1.0, sample_size=10, clock=clock)
    for i in range(10):  # ten requests in the same instant: infinite rate
        sampler.should_sample(None, i + 1, "burst")
    assert sampler.probability == MIN_PROBABILITY
    for i in range(10):  # then one every ten seconds
        clock.now += 10.0
        sampler.should_sample(None, i + 1, "calm")
    assert sampler.probability == 1.0


def test_the_parent_decision_wins() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=1.0, sample_size=10, clock=clock)
    for i in range(10):
        sampler.should_sample(None, i + 1, "burst")
    assert sampler.probability == MIN_PROBABILITY
    rng = random.Random(5)
    assert all(_sampled(sampler, rng.getrandbits(128), _parent(True)) for _ in range(50))
    sampler2 = AdaptiveSampler()
    assert not any(_sampled(sampler2, rng.getrandbits(128), _parent(False)) for _ in range(50))


def test_decisions_follow_the_trace_id() -> None:
    clock = FakeClock()
    sampler = AdaptiveSampler(max_sampled_per_second=1.0, sample_size=10, clock=clock)
    for i in range(10):
        clock.now += 0.01  # 100 requests/s: probability 0.01
        sampler.should_sample(None, i + 1, "warm-up")
    low = 1 << 50  # lower 64 bits far under 0.01 * 2**64
    high = (1 << 64) - 1
    assert _sampled(sampler, low)
    assert not _sampled(sampler, high)


def test_it_is_safe_from_many_threads() -> None:
    sampler = AdaptiveSampler(max_sampled_per_second=1e9, sample_size=7)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for i in range(5000):
                sampler.should_sample(None, i + 1, "t")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 0 < sampler.probability <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_sampled_per_second": 0}, "max_sampled_per_second must be positive"),
        ({"max_sampled_per_second": -1.0}, "max_sampled_per_second must be positive"),
        ({"max_sampled_per_second": float("inf")}, "max_sampled_per_second must be positive"),
        ({"max_sampled_per_second": "2"}, "max_sampled_per_second must be a number"),
        ({"sample_size": 0}, "sample_size must be a positive integer"),
        ({"sample_size": 2.5}, "sample_size must be a positive integer"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveSampler(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [
        ("always_on", None, ALWAYS_ON),
        ("ALWAYS_OFF", None, ALWAYS_OFF),
        ("parentbased_always_on", None, ParentBased(ALWAYS_ON)),
        ("parentbased_always_off", None, ParentBased(ALWAYS_OFF)),
        ("traceidratio", "0.25", TraceIdRatioBased(0.25)),
        ("traceidratio", None, TraceIdRatioBased(1.0)),
        ("parentbased_traceidratio", "0.5", ParentBased(TraceIdRatioBased(0.5))),
    ],
)
def test_standard_samplers_from_env(
    monkeypatch: pytest.MonkeyPatch, name: str, arg: str | None, expected: object
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    if arg is None:
        monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    else:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    sampler = sampler_from_env()
    assert sampler is not None
    assert sampler.get_description() == expected.get_description()  # type: ignore[attr-defined]


def test_no_env_sampler_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    assert sampler_from_env() is None


@pytest.mark.parametrize(
    ("name", "arg", "message"),
    [
        ("sometimes", None, "OTEL_TRACES_SAMPLER='sometimes' is not a supported sampler"),
        ("jaeger_remote", None, "OTEL_TRACES_SAMPLER='jaeger_remote'"),
        ("traceidratio", "half", "OTEL_TRACES_SAMPLER_ARG='half' is not a ratio"),
        ("traceidratio", "1.5", "OTEL_TRACES_SAMPLER_ARG='1.5' is not a ratio"),
        ("parentbased_traceidratio", "-0.1", "OTEL_TRACES_SAMPLER_ARG='-0.1'"),
    ],
)
def test_bad_env_samplers_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, arg: str | None, message: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    with pytest.raises(ValueError, match=message):
        sampler_from_env()
