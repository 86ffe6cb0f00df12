"""Rollout analysis against a real Prometheus scraping a real exporter on loopback.

The exporter's error ratio is set by the test; the analysis sees it through
Prometheus: pass, then fail with the documented reason, no data for a version
nothing reports, and unreachable once the server is stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from tests.support.prometheus import Prometheus, serve_metrics
from webhook.reconcile.analysis import Outcome, Verdict, analyse, client
from webhook.templating.rollout_policy import Analysis, Query

pytestmark = pytest.mark.integration

LABELS = {"namespace": "ml", "name": "iris", "model": "iris", "version": "4"}
ERROR_RATE = Query(
    name="error-rate",
    query='max(modelpin_test_error_ratio{namespace="{{namespace}}",model_version="{{version}}"})',
    max=0.01,
)


@pytest.fixture
def ratio() -> Iterator[tuple[Gauge, str]]:
    registry = CollectorRegistry()
    gauge = Gauge("modelpin_test_error_ratio", "Errors per request", ["namespace", "model_version"], registry=registry)
    with serve_metrics(registry) as target:
        yield gauge, target


@pytest.fixture
def prometheus(ratio: tuple[Gauge, str], tmp_path: Path) -> Iterator[Prometheus]:
    _, target = ratio
    with Prometheus(tmp_path, [target], lookback_seconds=3) as server:
        yield server


async def settle(analysis: Analysis, labels: dict[str, str], want: Verdict, within: float = 30) -> Outcome:
    """The analysis once Prometheus has scraped what the exporter says now (scrapes are every second)."""
    end = time.monotonic() + within
    async with client(analysis.timeout_seconds) as http:
        while True:
            outcome = await analyse(analysis, labels, 10, http)
            if outcome.verdict is want or time.monotonic() > end:
                return outcome
            await asyncio.sleep(0.5)


async def test_pass_then_fail_then_no_data_then_unreachable(ratio: tuple[Gauge, str], prometheus: Prometheus) -> None:
    gauge, _ = ratio
    base = prometheus.url
    analysis = Analysis(prometheus=base, queries=[ERROR_RATE], timeout_seconds=2)

    gauge.labels("ml", "4").set(0.002)
    gauge.labels("ml", "3").set(0.9)  # the old version's errors are not the new one's
    passed = await settle(analysis, LABELS, Verdict.PASS)
    assert (passed.verdict, passed.values) == (Verdict.PASS, {"error-rate": 0.002})

    gauge.labels("ml", "4").set(0.034)
    failed = await settle(analysis, LABELS, Verdict.FAIL)
    assert (failed.verdict, failed.reason) == (Verdict.FAIL, "error-rate 0.034 > 0.01 at 10 %")

    nothing = await settle(analysis, {**LABELS, "version": "5"}, Verdict.NO_DATA)
    assert (nothing.verdict, nothing.reason) == (Verdict.NO_DATA, "error-rate: no data at 10 %")

    prometheus.stop()
    started = time.monotonic()
    gone = await settle(analysis, LABELS, Verdict.UNREACHABLE, within=0)
    assert gone.verdict is Verdict.UNREACHABLE
    assert gone.reason.startswith(f"error-rate: Prometheus at {base} unreachable ("), gone.reason
    assert time.monotonic() - started < 3


async def test_a_query_prometheus_refuses_pauses_rather_than_judges(prometheus: Prometheus) -> None:
    base = prometheus.url
    broken = Query(name="typo", query='sum(rate(modelpin_test_error_ratio{namespace="{{namespace}}"}[5m])', max=1)
    async with client(2.0) as http:
        outcome = await analyse(Analysis(prometheus=base, queries=[broken]), LABELS, 10, http)
    assert outcome.verdict is Verdict.UNREACHABLE
    assert outcome.reason.startswith("typo: Prometheus answered HTTP 400: "), outcome.reason
