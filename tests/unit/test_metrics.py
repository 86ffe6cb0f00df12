"""The event-loop metrics render as the prometheus-client ones they replace."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from webhook import metrics
from webhook.metrics import LoopCounter, LoopHistogram

BUCKETS = (0.001, 0.01, 0.1)
OBSERVED = (0.0005, 0.001, 0.002, 0.01, 0.5, 7.0)


def samples(text: bytes, name: str) -> list[str]:
    return [line for line in text.decode().splitlines() if line.startswith(name) and "_created" not in line]


def test_the_histogram_matches_prometheus_clients() -> None:
    theirs = CollectorRegistry()
    reference = Histogram("t_seconds", "doc", ["outcome"], buckets=BUCKETS, registry=theirs)
    ours = LoopHistogram("o_seconds", "doc", "outcome", ("a", "b"), buckets=BUCKETS)
    try:
        for value in OBSERVED:
            reference.labels("a").observe(value)
            ours.labels("a").observe(value)
        reference.labels("b")
        expected = [line.replace("t_seconds", "o_seconds") for line in samples(generate_latest(theirs), "t_seconds")]
        assert samples(generate_latest(REGISTRY), "o_seconds") == expected
        # a value on a bound counts in that bucket, as ``le`` says
        assert 'o_seconds_bucket{le="0.001",outcome="a"} 2.0' in expected
    finally:
        REGISTRY.unregister(ours)


def test_the_counter_renders_every_label_value() -> None:
    ours = LoopCounter("o_things_total", "doc", "result", ("hit", "miss"))
    try:
        ours.labels("hit").inc()
        ours.labels("hit").inc(2)
        assert REGISTRY.get_sample_value("o_things_total", {"result": "hit"}) == 3
        assert REGISTRY.get_sample_value("o_things_total", {"result": "miss"}) == 0
    finally:
        REGISTRY.unregister(ours)


def test_the_review_metrics_are_registered_once() -> None:
    text = generate_latest(REGISTRY).decode()
    for name in ("modelpin_admission_seconds", "modelpin_resolutions_total", "modelpin_cache_total"):
        assert text.count(f"# TYPE {name} ") == 1
    assert metrics.ADMISSION_PATCHED is metrics.ADMISSION_LATENCY.labels("patched")
