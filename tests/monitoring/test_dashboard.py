"""The dashboard and the alerts query only metrics modelpin exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml
from prometheus_client import REGISTRY

import webhook.metrics  # noqa: F401  (defines modelpin's metrics in the default registry)
from tests.support.tools import REPO

MONITORING = REPO / "manifests" / "monitoring"
NAME = re.compile(r"\bmodelpin_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def exported() -> set[str]:
    """Series names modelpin can expose, whether or not a labelled metric has children yet."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("modelpin_"):
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def test_the_registry_is_read() -> None:
    # Guards the checks below against an empty registry (which would reject everything anyway,
    # but with a misleading message).
    assert {"modelpin_resolutions_total", "modelpin_admission_seconds_bucket", "modelpin_ready"} <= exported()


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    used = {name for q in queries(dashboard) for name in NAME.findall(q)}
    assert len(used) >= 10  # the regex found the queries
    assert used - exported() == set()


def test_alerts_query_only_exported_metrics() -> None:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    used = {name for q in queries(rule["spec"]) for name in NAME.findall(q)}
    assert used
    assert used - exported() == set()


def test_dashboard_panels_have_queries_and_unique_ids() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_shows_rollouts_by_phase_and_their_results() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    by_title = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboard["panels"]}
    assert by_title["Rollouts by phase"] == ['sum by (phase) (modelpin_rollouts{namespace=~"$namespace"})']
    assert by_title["Rollout results"] == [
        'sum by (result) (increase(modelpin_rollout_results_total{namespace=~"$namespace"}[1h]))'
    ]
