"""What /metrics exports before anything happened: every known label, at zero."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from webhook import metrics  # noqa: F401  (defines the metrics on import)


def exported() -> str:
    return generate_latest(REGISTRY).decode()


def test_known_labels_are_exported_from_the_start() -> None:
    text = exported()
    for outcome in ("patched", "unchanged", "denied", "skipped", "bad_request", "internal_error"):
        assert f'modelpin_admission_seconds_count{{outcome="{outcome}"}}' in text
    for result in ("resolved", "recorded", "paused", "stale", "not_found", "unavailable", "invalid", "policy"):
        assert f'modelpin_resolutions_total{{result="{result}"}}' in text
    for result in ("hit", "miss", "bypass", "joined", "not_found"):
        assert f'modelpin_cache_total{{result="{result}"}}' in text


def test_no_remembered_answers_are_counted() -> None:
    # answers are not cached (DESIGN.md section 5), so there is no memo to count
    assert "modelpin_decision_memo" not in exported()


def test_every_field_state_is_exported_from_the_start() -> None:
    from webhook.reconcile.states import STATES

    text = exported()
    for state in STATES:
        assert f'modelpin_objects{{state="{state}"}} ' in text
