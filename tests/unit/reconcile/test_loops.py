"""What the loops share: jittered capped backoff, failures logged once per cause."""

from __future__ import annotations

import logging

import pytest

from webhook.reconcile.loops import Backoff, Once


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(1.0, 8.0)
    delays = [backoff.next_delay() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_a_failure_is_logged_once_per_cause_and_the_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    once = Once(logging.getLogger("test.once"))
    with caplog.at_level(logging.INFO, logger="test.once"):
        for _ in range(3):
            once.failed("watch", "watch", "connection refused")
        once.failed("watch", "watch", "HTTP 500")
        once.ok("watch", "watch")
        once.ok("watch", "watch")
    assert [r.getMessage() for r in caplog.records] == [
        "watch: connection refused",
        "watch: HTTP 500",
        "watch: recovered",
    ]
