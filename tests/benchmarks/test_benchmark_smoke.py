"""Keeps the benchmark working: one tiny run inside the normal suite (numbers not judged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.admission import SERVERS, main

pytestmark = pytest.mark.benchmark


def test_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    report = main(
        [
            "--requests",
            "40",
            "--naive-requests",
            "4",
            "--levels",
            "1,4",
            "--rounds",
            "2",
            # the driver CI has (wrk is installed by `make bench` only)
            "--driver",
            "httpx",
            "--seed-requests",
            "20",
            "--out",
            str(tmp_path),
        ]
    )
    for server in SERVERS:
        for level in (1, 4):
            result = report["results"][server][level]
            assert result["failures"] == 0 and result["requests"] >= 4
            assert result["cpu_us"] >= 0
    for run in ("seed", "seed_echo"):
        assert report[run]["requests"] == 20 and report[run]["failures"] == 0
    assert report["cold"]["registry_lookups"] == 1 and report["cold"]["allowed"] == 100
    assert (tmp_path / "admission-latency.png").stat().st_size > 10_000
