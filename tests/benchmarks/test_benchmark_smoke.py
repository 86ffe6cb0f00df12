"""Keeps the benchmark working: one tiny run inside the normal suite (numbers not judged).

What is judged is that each way measures what it is named for: every timed review of a
modelpin way was decided in full and patched, from a warm resolution cache, and the
``modelpin-new`` reviews were each a different object while ``modelpin-repeated`` sent two.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.admission import MODES, SERVERS, main

pytestmark = pytest.mark.benchmark

LEVELS = (1, 4)
# distinct resolution cache keys per review: the seed's four models, the InferenceService's six
MIN_KEYS_PER_REVIEW = 4


def test_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    report = main(
        [
            "--requests",
            "40",
            "--naive-requests",
            "4",
            "--levels",
            ",".join(map(str, LEVELS)),
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
        for level in LEVELS:
            result = report["results"][server][level]
            assert result["failures"] == 0 and result["requests"] >= 4
            assert result["cpu_us"] >= 0
    for way, mode in MODES.items():
        for level in LEVELS:
            for run in report["results"][way][level]["runs"]:
                # the load process's warm-up sends one review per connection before the timed ones
                answered = run["requests"] + level
                assert run["admitted"] == answered, (way, level, run)
                assert run["patched"] == answered, (way, level, run)  # a full decision each, with a patch
                # served from the warm cache (a rare miss is an entry whose renewal landed late on a
                # loaded machine); a bypass would mean a refresh token newer than the cache's entries
                assert run["cache_hit"] >= MIN_KEYS_PER_REVIEW * answered, (way, level, run)
                assert run["cache_bypass"] == 0, (way, level, run)
                distinct = 2 if mode == "repeated" else run["requests"]
                assert run["objects"] == distinct, (way, level, run)
    for run in ("seed", "seed_echo"):
        assert report[run]["requests"] == 20 and report[run]["failures"] == 0
    assert report["cold"]["registry_lookups"] == 1 and report["cold"]["allowed"] == 100
    assert (tmp_path / "admission-latency.png").stat().st_size > 10_000
