"""Tables, JSON and YAML as printed."""

from __future__ import annotations

import orjson
import yaml

from webhook.ops.output import history, status, table
from webhook.ops.status import Row
from webhook.templating.rollout_annotations import Entry

ROW = Row(
    "prod", "inferenceservice", "iris", "/spec/p", "iris", "iris@champion", "2", "3", "behind", "True", "s3://m/2"
)
HELD = Row(
    "prod",
    "inferenceservice",
    "fraud",
    "/spec/p",
    "fraud",
    "fraud@champion",
    "1",
    "2",
    "held",
    "True",
    "s3://f/1",
    "incident",
    "2026-03-01T14:00:00Z",
)


def test_tables_pad_columns_and_mark_empty_cells() -> None:
    assert table(["A", "LONGER"], [["xyz", ""]]) == "A     LONGER\nxyz   -\n"


def test_status_table_wide_and_all_namespaces() -> None:
    lines = status([ROW], "table", all_namespaces=False).splitlines()
    assert lines[0].split() == ["NAME", "MODEL", "RUNNING", "REGISTRY", "STATE", "SERVING"]
    assert lines[1].split() == ["inferenceservice/iris", "iris", "2", "3", "behind", "True"]
    wide = status([HELD], "wide", all_namespaces=True).splitlines()
    assert wide[0].split()[0] == "NAMESPACE" and wide[0].split()[-2:] == ["REASON", "UNTIL"]
    assert wide[1].split()[-2:] == ["incident", "2026-03-01T14:00:00Z"]


def test_status_table_shows_a_rollouts_share_in_the_state_cell() -> None:
    rolling = Row(
        "prod",
        "inferenceservice",
        "iris",
        "/spec/p",
        "iris",
        "iris@champion",
        "2",
        "3",
        "rolling-out",
        "True",
        "s3://m/2",
        "10 % on version 3",
        percent=10,
    )
    for fmt in ("table", "wide"):
        line = status([rolling], fmt, all_namespaces=False).splitlines()[1]
        assert "   rolling-out 10 %   True" in line
    assert "rolling-out 10 %" not in status([ROW], "table", all_namespaces=False)


def test_status_json_and_yaml_carry_objects_and_summary() -> None:
    doc = orjson.loads(status([ROW, HELD], "json", all_namespaces=False))
    assert doc["summary"] == {"held": 1, "behind": 1}
    assert "reason" not in doc["objects"][0] and doc["objects"][1]["until"] == "2026-03-01T14:00:00Z"
    assert yaml.safe_load(status([ROW, HELD], "yaml", all_namespaces=False)) == doc


def test_history_table_and_json() -> None:
    entries = [
        ("/spec/p", Entry("1", "s3://m/1", "2026-03-01T10:00:00Z", "created")),
        ("/spec/p", Entry("2", "s3://m/2", "2026-03-01T11:00:00Z", "moved")),
    ]
    lines = history(entries, "table").splitlines()
    assert lines[0].split() == ["FIELD", "WHEN", "VERSION", "CAUSE", "URI"]
    assert lines[2].split() == ["/spec/p", "2026-03-01T11:00:00Z", "2", "moved", "s3://m/2"]
    assert [e["version"] for e in orjson.loads(history(entries, "json"))["history"]["/spec/p"]] == ["1", "2"]
