from __future__ import annotations

import orjson

from webhook.templating import record_annotations as records


def test_dumps_is_sorted_and_compact() -> None:
    assert records.dumps({"b": 1, "a": {"z": 1, "y": 2}}) == '{"a":{"y":2,"z":1},"b":1}'


def test_read_empty_metadata() -> None:
    rec = records.read({})
    assert rec.templates == {}
    assert rec.resolved == {}
    assert rec.paused is False
    assert rec.refresh_ms == 0
    assert rec.problems == []


def test_read_round_trip() -> None:
    entry = {"registry": "mlflow", "model": "m", "selector": "@c", "version": "3", "run_id": "r", "uri": "s3://x"}
    annotations = {
        records.TEMPLATES: records.dumps({"/spec/a": "models:/m@c", "/spec/b": 5}),
        records.RESOLVED: records.dumps({"/spec/a": entry, "/spec/c": {"uri": 1}, "/spec/d": "x"}),
        records.PAUSED: "true",
        records.REFRESH: "1700000000123",
    }
    rec = records.read({"annotations": annotations})
    assert rec.templates == {"/spec/a": "models:/m@c"}  # non-string template dropped
    assert rec.resolved == {"/spec/a": entry}  # entries without a string uri dropped
    assert rec.paused is True
    assert rec.refresh_ms == 1700000000123
    assert rec.problems == []


def test_missing_record_fields_become_empty_strings() -> None:
    rec = records.read(
        {"annotations": {records.RESOLVED: orjson.dumps({"/spec/a": {"uri": "s3://x", "version": 2}}).decode()}}
    )
    assert rec.resolved["/spec/a"] == {
        "registry": "",
        "model": "",
        "selector": "",
        "version": "2",
        "run_id": "",
        "uri": "s3://x",
    }


def test_paused_only_when_exactly_true() -> None:
    assert records.read({"annotations": {records.PAUSED: "True"}}).paused is False
    assert records.read({"annotations": {records.PAUSED: "yes"}}).paused is False


def test_damaged_records_are_reported_not_fatal() -> None:
    rec = records.read(
        {
            "annotations": {
                records.TEMPLATES: "{not json",
                records.RESOLVED: "[1, 2]",
                records.REFRESH: "yesterday",
            }
        }
    )
    assert rec.templates == {}
    assert rec.resolved == {}
    assert rec.refresh_ms == 0
    assert rec.problems == [
        "ignored annotation modelpin.io/templates: not JSON",
        "ignored annotation modelpin.io/resolved: not a JSON object",
        "ignored modelpin.io/refresh='yesterday': not milliseconds since the epoch",
    ]


def test_recorded_uri_needs_both_records() -> None:
    rec = records.Records(
        templates={"/spec/a": "models:/m/1"},
        resolved={"/spec/a": {"uri": "s3://a"}, "/spec/b": {"uri": "s3://b"}},
    )
    assert rec.recorded_uri("/spec/a") == "s3://a"
    assert rec.recorded_uri("/spec/b") is None
    assert rec.recorded_uri("/spec/c") is None


def test_null_annotations() -> None:
    assert records.read({"annotations": None}).templates == {}


def test_model_id_is_kept_when_a_non_empty_string() -> None:
    base = {"registry": "mlflow", "model": "m", "selector": "@c", "version": "3", "run_id": "r", "uri": "s3://x"}
    resolved = {
        "/spec/a": {**base, "model_id": "m-abc"},
        "/spec/b": {**base, "model_id": ""},
        "/spec/c": {**base, "model_id": 7},
        "/spec/d": {**base, "other": "dropped"},
    }
    rec = records.read({"annotations": {records.RESOLVED: records.dumps(resolved)}})
    assert rec.resolved["/spec/a"] == {**base, "model_id": "m-abc"}
    assert rec.resolved["/spec/b"] == base
    assert rec.resolved["/spec/c"] == base
    assert rec.resolved["/spec/d"] == base
