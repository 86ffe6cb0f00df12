"""Building a hold from an object and its history."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from webhook.ops.holds import HoldError, build_hold, describe_hold, previous_version
from webhook.ops.kinds import parse_target
from webhook.templating.rollout_annotations import Entry, dump_history

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
A, B = "/spec/predictor/model/storageUri", "/spec/transformer/containers/0/env/0/value"


def obj(models: dict[str, tuple[str, str]], history: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """``models``: pointer -> (model, running version); ``history``: pointer -> versions, oldest first."""
    annotations = {
        "modelpin.io/templates": orjson.dumps({p: f"models:/{m}@champion" for p, (m, _) in models.items()}).decode(),
        "modelpin.io/resolved": orjson.dumps(
            {
                p: {
                    "registry": "mlflow",
                    "model": m,
                    "selector": "@champion",
                    "version": v,
                    "run_id": "",
                    "uri": f"s3://{m}/{v}",
                }
                for p, (m, v) in models.items()
            }
        ).decode(),
    }
    if history:
        annotations["modelpin.io/history"] = dump_history(
            {
                p: [Entry(v, f"s3://x/{v}", f"2026-03-01T1{i}:00:00Z", "moved") for i, v in enumerate(vs)]
                for p, vs in history.items()
            }
        )
    return {"metadata": {"name": "iris", "namespace": "prod", "annotations": annotations}}


def test_a_plain_hold_keeps_what_runs() -> None:
    hold = build_hold(obj({A: ("iris", "3")}), reason=" incident 42 ", now=NOW, by="alice")
    assert (hold.reason, hold.since, hold.until, hold.by, dict(hold.versions)) == (
        "incident 42",
        "2026-03-01T12:00:00Z",
        None,
        "alice",
        {},
    )


def test_previous_takes_each_fields_version_before_the_current_one() -> None:
    hold = build_hold(
        obj({A: ("iris", "5"), B: ("tok", "2")}, {A: ["3", "4", "5"], B: ["1", "2"]}),
        reason="r",
        now=NOW,
        previous=True,
        until=NOW + dt.timedelta(hours=2),
    )
    assert dict(hold.versions) == {A: "4", B: "1"} and hold.until == "2026-03-01T14:00:00Z"


def test_previous_without_an_earlier_version_says_which_field() -> None:
    with pytest.raises(HoldError, match=f"no earlier version for {B}"):
        build_hold(
            obj({A: ("iris", "5"), B: ("tok", "2")}, {A: ["4", "5"], B: ["2"]}), reason="r", now=NOW, previous=True
        )


def test_version_pins_every_field_of_the_model() -> None:
    hold = build_hold(obj({A: ("iris", "5"), B: ("tok", "2")}), reason="r", now=NOW, version="3", model="iris")
    assert dict(hold.versions) == {A: "3"}
    with pytest.raises(HoldError, match="name one with --model"):
        build_hold(obj({A: ("iris", "5"), B: ("tok", "2")}), reason="r", now=NOW, version="3")
    with pytest.raises(HoldError, match="expected a registered version number"):
        build_hold(obj({A: ("iris", "5")}), reason="r", now=NOW, version="v3")
    with pytest.raises(HoldError, match="references model 'nope'"):
        build_hold(obj({A: ("iris", "5")}), reason="r", now=NOW, version="3", model="nope")


def test_an_unmanaged_object_or_an_empty_reason_is_refused() -> None:
    with pytest.raises(HoldError, match="no modelpin templates"):
        build_hold({"metadata": {"name": "x", "namespace": "y"}}, reason="r", now=NOW)
    with pytest.raises(HoldError, match="--reason"):
        build_hold(obj({A: ("iris", "5")}), reason="  ", now=NOW)


def test_previous_version_skips_repeats_of_the_current_one() -> None:
    entries = [Entry(v, "", "", "moved") for v in ("2", "3", "3")]
    assert previous_version(entries, "3") == "2" and previous_version(entries[1:], "3") is None


def test_what_is_printed() -> None:
    named, _ = parse_target("isvc/iris")
    hold = build_hold(obj({A: ("iris", "5")}, {A: ["4", "5"]}), reason="bad canary", now=NOW, previous=True)
    assert describe_hold(named, "prod", "iris", hold) == (
        f"held inferenceservice/iris in prod until released: bad canary (pinned: {A} at version 4)"
    )
