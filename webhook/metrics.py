"""Prometheus metrics, defined once per process."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector


class LoopCount:
    """One labelled count, incremented by the event loop's thread only."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


Child = TypeVar("Child")


class _LoopFamily(Collector, Generic[Child]):
    """One metric with one label and its children, for code that runs several times per review.

    prometheus-client's metrics take a lock on every update, which was most of
    what the remembered-answer path cost besides the answer itself. Everything
    here runs on the event loop's thread, where plain numbers are enough; the
    registry still renders them as ordinary counters and histograms.
    """

    def __init__(self, name: str, documentation: str, label: str, children: dict[str, Child]) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._children = children
        REGISTRY.register(self)

    def labels(self, value: str) -> Child:
        return self._children[value]


class LoopCounter(_LoopFamily[LoopCount]):
    def __init__(self, name: str, documentation: str, label: str, values: Sequence[str]) -> None:
        super().__init__(name, documentation, label, {value: LoopCount() for value in values})

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, child in self._children.items():
            family.add_metric([value], child.value)
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=[self.label])


class LoopTiming:
    """One labelled histogram, observed by the event loop's thread only."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.total = 0.0

    def observe(self, amount: float) -> None:
        # the first bucket whose upper bound is >= amount, as Prometheus' ``le`` means
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.total += amount


class LoopHistogram(_LoopFamily[LoopTiming]):
    def __init__(
        self, name: str, documentation: str, label: str, values: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, label, {value: LoopTiming(buckets) for value in values})

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, child in self._children.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*(repr(b) for b in child.bounds), "+Inf"), child.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([value], buckets, child.total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])


_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

ADMISSION_LATENCY = LoopHistogram(
    "modelpin_admission_seconds",
    "Time to answer one AdmissionReview, by outcome",
    "outcome",
    ("patched", "unchanged", "denied", "skipped", "bad_request"),
    buckets=_FAST,
)
RESOLUTIONS = LoopCounter(
    "modelpin_resolutions_total",
    "Template resolutions, by result",
    "result",
    ("resolved", "recorded", "paused", "stale", "not_found", "unavailable", "invalid", "policy"),
)
CACHE = LoopCounter("modelpin_cache_total", "Resolution cache lookups", "result", ("hit", "miss", "bypass", "joined"))
REGISTRY_LATENCY = Histogram(
    "modelpin_registry_request_seconds",
    "Latency of registry calls, by registry and resource",
    ["registry", "operation"],
    buckets=_FAST,
)
REGISTRY_ERRORS = Counter("modelpin_registry_errors_total", "Failed registry calls", ["registry", "kind"])
REGISTRY_LOOKUPS = Counter(
    "modelpin_registry_lookups_total",
    "Resolutions that went to the registry (one per reference, however many calls it took)",
    ["registry"],
)
MEMO = LoopCounter(
    "modelpin_decision_memo_total",
    "Reviews answered from a remembered decision, or not",
    "result",
    ("review", "hit", "fields", "miss"),
)
CERT_RELOADS = Counter("modelpin_cert_reloads_total", "Serving certificate reloads", ["result"])
READY = Gauge("modelpin_ready", "1 when configuration and certificates are loaded")

# Pre-bound children: ``labels()`` of a prometheus-client metric takes a lock
# and hashes on every call, too slow for a path taken several times per review.
RESOLVED = RESOLUTIONS.labels("resolved")
RECORDED = RESOLUTIONS.labels("recorded")
PAUSED = RESOLUTIONS.labels("paused")
INVALID = RESOLUTIONS.labels("invalid")
POLICY = RESOLUTIONS.labels("policy")
CACHE_HIT = CACHE.labels("hit")
CACHE_MISS = CACHE.labels("miss")
CACHE_BYPASS = CACHE.labels("bypass")
CACHE_JOINED = CACHE.labels("joined")
ADMISSION_PATCHED = ADMISSION_LATENCY.labels("patched")
ADMISSION_UNCHANGED = ADMISSION_LATENCY.labels("unchanged")
ADMISSION_DENIED = ADMISSION_LATENCY.labels("denied")
ADMISSION_SKIPPED = ADMISSION_LATENCY.labels("skipped")
MEMO_REVIEW = MEMO.labels("review")
MEMO_HIT = MEMO.labels("hit")
MEMO_FIELDS = MEMO.labels("fields")
MEMO_MISS = MEMO.labels("miss")
