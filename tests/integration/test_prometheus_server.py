"""The Prometheus server hack/tools.sh builds scrapes an exporter and answers the query API.

The server is Prometheus built from its module with ``remove_all_sd``: static
targets only. This checks the build the rollout tests stand on, against a real
exporter (prometheus-client's own HTTP server) on loopback.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge

from tests.support.prometheus import Prometheus, serve_metrics
from tests.support.tools import run


@pytest.fixture
def probe() -> Iterator[str]:
    registry = CollectorRegistry()
    Gauge("modelpin_probe_value", "A value only this test exports", registry=registry).set(42.5)
    with serve_metrics(registry) as target:
        yield target


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    body = get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_the_version_is_the_pinned_one() -> None:
    # v0.316.0 of the Go module is Prometheus 3.16.0: the -X flags in tools.sh say so.
    assert run("prometheus", "--version").stdout.startswith("prometheus, version 3.16.0 ")


def test_prometheus_scrapes_a_local_exporter_and_answers_a_query(probe: str, tmp_path: Path) -> None:
    with Prometheus(tmp_path, [probe], job="exporter") as server:
        base = server.url

        # Scraped every second: the first sample lands within a few.
        def scraped() -> bool:
            return bool(query(base, 'modelpin_probe_value{job="exporter"}'))

        server.process.wait_until(scraped, 60, "the exporter's sample")
        (sample,) = query(base, 'modelpin_probe_value{job="exporter"}')
        assert sample["metric"]["instance"] == probe
        assert float(sample["value"][1]) == 42.5
        (up,) = query(base, 'up{job="exporter"}')
        assert up["value"][1] == "1"
        # A name nothing exports gives an empty answer, not the probe's series.
        assert query(base, "modelpin_probe_value_absent") == []
