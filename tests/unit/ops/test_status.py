"""Field states, serving readiness and the rows of ``modelpin status``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from tests.support.fakes import FakeRegistry, make_settings
from webhook.ops.objects import list_managed
from webhook.ops.status import Lookup, collect, decide, missing_tags, serving, summary
from webhook.reconcile.kube import ApiException, Kind
from webhook.registry.clients import ModelVersion
from webhook.registry.logged_models import LoggedModel
from webhook.registry.resolver import Resolver
from webhook.templating.rollout_annotations import Hold

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
V3 = ModelVersion("iris", "3", "READY", "None", "s3://m/3", "r3", tags={"approved": "yes"})
HELD = Hold("incident", since="2026-03-01T11:00:00Z", until="2026-03-01T13:00:00Z")
EXPIRED = Hold("incident", since="2026-03-01T10:00:00Z", until="2026-03-01T11:00:00Z")


def state(**changes: Any) -> str:
    values: dict[str, Any] = {
        "paused": False,
        "hold": None,
        "now": NOW,
        "pinned": False,
        "lookup": Lookup(V3),
        "missing_tags": [],
        "running_version": "3",
    }
    values.update(changes)
    return decide(**values)[0]


def test_states_in_order_of_precedence() -> None:
    assert state() == "current"
    assert state(running_version="2") == "behind"
    assert state(running_version="2", missing_tags=["approved=yes"]) == "gated"
    assert state(lookup=Lookup(None, "gone"), missing_tags=["approved=yes"]) == "unresolvable"
    assert state(lookup=Lookup(None, "gone"), pinned=True) == "pinned"
    assert state(pinned=True, hold=HELD) == "held"
    assert state(pinned=True, hold=HELD, paused=True) == "paused"


def test_an_expired_hold_no_longer_holds() -> None:
    assert state(hold=EXPIRED, running_version="2") == "behind"


def test_held_rows_carry_reason_and_expiry() -> None:
    _, reason, until = decide(
        paused=False, hold=HELD, now=NOW, pinned=False, lookup=Lookup(V3), missing_tags=[], running_version="3"
    )
    assert (reason, until) == ("incident", "2026-03-01T13:00:00Z")


def test_missing_tags_name_key_and_value() -> None:
    assert missing_tags(V3, {"approved": "yes"}) == []
    assert missing_tags(V3, {"approved": "no", "scanned": "true"}) == ["approved=no", "scanned=true"]
    assert missing_tags(V3, None) == [] and missing_tags(None, {"a": "b"}) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            {
                "status": {
                    "conditions": [{"type": "PredictorReady", "status": "True"}, {"type": "Ready", "status": "False"}]
                }
            },
            "False",
        ),
        ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "True"),
        ({"status": {"state": "Available"}}, "Available"),
        ({"status": "weird"}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_serving_readiness(obj: dict[str, Any], expected: str) -> None:
    assert serving(obj) == expected


class _Custom:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.namespaces: list[str | None] = []

    async def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.namespaces.append(args[2])
        return {"items": [i for i in self.items if i["metadata"]["namespace"] == args[2]], "metadata": {}}

    async def list_cluster_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.namespaces.append(None)
        return {"items": self.items, "metadata": {}}


class _Kube:
    timeout = 5.0
    page_size = 100

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.custom = _Custom(items)


def managed(name: str, templates: dict[str, str], versions: dict[str, str], **annotations: str) -> dict[str, Any]:
    resolved = {
        p: {"registry": "mlflow", "model": "iris", "selector": "", "version": v, "run_id": "", "uri": f"s3://m/{v}"}
        for p, v in versions.items()
    }
    return {
        "metadata": {
            "name": name,
            "namespace": "prod",
            "annotations": {
                "modelpin.io/templates": orjson.dumps(templates).decode(),
                "modelpin.io/resolved": orjson.dumps(resolved).decode(),
                **annotations,
            },
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


async def test_collect_makes_one_row_per_field_and_asks_the_registry_once_per_reference() -> None:
    reg = FakeRegistry()
    for v in (1, 2, 3):
        reg.add("iris", v, f"s3://m/{v}")
    reg.set_alias("iris", "champion", 3)
    settings = make_settings()
    resolver = Resolver(settings, {"mlflow": reg})
    field = "/spec/predictor/model/storageUri"
    items = [
        managed("cur", {field: "models:/iris@champion"}, {field: "3"}),
        managed("old", {field: "models:/iris@champion"}, {field: "2"}),
        managed("pin", {field: "models:/iris/1"}, {field: "1"}),
        managed("bad", {field: "models:/ghost@champion"}, {field: "1"}),
        managed("typo", {field: "{{ mlflow.s3[iris] }}"}, {}),
    ]
    kube = _Kube(items)
    rows = await collect(
        kube, resolver, settings, [Kind("serving.kserve.io", "v1beta1", "inferenceservices")], "prod", NOW
    )  # type: ignore[arg-type]
    by_name = {r.name: r for r in rows}
    assert {n: r.state for n, r in by_name.items()} == {
        "cur": "current",
        "old": "behind",
        "pin": "pinned",
        "bad": "unresolvable",
        "typo": "unresolvable",
    }
    assert by_name["old"].registry_version == "3" and by_name["old"].running_version == "2"
    assert by_name["cur"].serving == "True" and by_name["cur"].kind == "inferenceservice"
    assert by_name["bad"].reason is not None and "ghost" in by_name["bad"].reason
    assert by_name["typo"].reason is not None and "does not parse" in by_name["typo"].reason
    assert kube.custom.namespaces == ["prod"]
    # iris@champion for two objects, ghost@champion, iris/1: one lookup each; the typo none
    assert (reg.calls["get_alias"], reg.calls["get_version"]) == (2, 1)
    assert summary(rows) == {"pinned": 1, "unresolvable": 2, "behind": 1, "current": 1}
    await resolver.aclose()


async def test_a_version_without_the_required_tags_is_gated() -> None:
    reg = FakeRegistry()
    reg.add("iris", 1, "s3://m/1", tags={"approved": "yes"})
    reg.add("iris", 2, "s3://m/2")
    reg.set_alias("iris", "champion", 2)
    settings = make_settings(namespaces={"prod": {"require_tags": {"approved": "yes"}}})
    resolver = Resolver(settings, {"mlflow": reg})
    kube = _Kube([managed("old", {"/spec/x": "models:/iris@champion"}, {"/spec/x": "1"})])
    kinds = [Kind("serving.kserve.io", "v1beta1", "inferenceservices")]
    (row,) = await collect(kube, resolver, settings, kinds, "prod", NOW)  # type: ignore[arg-type]
    assert (row.state, row.reason, row.registry_version) == ("gated", "version 2 lacks approved=yes", "2")
    reg.versions["iris"]["2"] = ModelVersion("iris", "2", "READY", "None", "s3://m/2", "", tags={"approved": "yes"})
    (row,) = await collect(kube, resolver, settings, kinds, "prod", NOW)  # type: ignore[arg-type]
    assert row.state == "behind"
    await resolver.aclose()


class _Busy(_Custom):
    """Answers 429 (a CRD's storage starting) before the list."""

    def __init__(self, items: list[dict[str, Any]], busy: int) -> None:
        super().__init__(items)
        self.busy = busy

    async def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.busy:
            self.busy -= 1
            raise ApiException(status=429, reason="Too Many Requests")
        return await super().list_namespaced_custom_object(*args, **kwargs)


async def test_a_busy_apiserver_is_asked_again_and_a_missing_crd_lists_nothing() -> None:
    kube = _Kube([managed("cur", {"/spec/x": "models:/iris@champion"}, {"/spec/x": "3"})])
    kube.custom = _Busy(kube.custom.items, busy=2)
    kind = Kind("serving.kserve.io", "v1beta1", "inferenceservices")
    assert [o["metadata"]["name"] async for o in list_managed(kube, kind, "prod")] == ["cur"]  # type: ignore[arg-type]

    class _Missing(_Custom):
        async def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise ApiException(status=404, reason="Not Found")

    kube.custom = _Missing([])
    assert [o async for o in list_managed(kube, kind, "prod")] == []  # type: ignore[arg-type]


async def test_a_logged_model_reference_is_pinned() -> None:
    model_id = "m-" + "b2" * 16

    class Logged(FakeRegistry):
        async def logged_model(self, wanted: str) -> LoggedModel:
            await self._enter("logged_model")
            return LoggedModel(wanted, "model", f"s3://m/{wanted}", "LOGGED_MODEL_READY", "r", "1")

    reg = Logged()
    settings = make_settings()
    resolver = Resolver(settings, {"mlflow": reg})
    field = "/spec/predictor/model/storageUri"
    kube = _Kube([managed("lm", {field: f"models:/{model_id}"}, {field: model_id})])
    kinds = [Kind("serving.kserve.io", "v1beta1", "inferenceservices")]
    (row,) = await collect(kube, resolver, settings, kinds, "prod", NOW)  # type: ignore[arg-type]
    assert (row.state, row.model, row.running_version) == ("pinned", model_id, model_id)
    await resolver.aclose()
