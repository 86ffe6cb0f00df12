from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from tests.support.admitting import response_to
from tests.support.fakes import Clock, FakeRegistry, apply_response, make_settings, seed_uri
from tests.support.reviews import DEMO1, GRAPH, fixture, request
from webhook.admission import gates
from webhook.registry.resolver import Resolver

PASSED = {"validation_status": "passed"}
TEMPLATE = '{{ mlflow.blob["iris demo1"] }}'


def test_missing_lists_each_required_tag_not_carried() -> None:
    required = {"validation_status": "passed", "owner": "risk"}
    assert gates.missing(required, {"validation_status": "passed", "owner": "risk", "x": "y"}) == []
    assert gates.missing(required, {"validation_status": "failed"}) == [
        ("validation_status", "passed"),
        ("owner", "risk"),
    ]
    assert gates.missing(None, {}) == []
    assert gates.missing({}, {}) == []


def test_refusal_names_namespace_tag_version_and_model() -> None:
    assert gates.refusal("production", "iris", "4", {}, [("validation_status", "passed")]) == (
        "namespace 'production' requires tag validation_status=passed; version 4 of 'iris' has validation_status unset"
    )
    assert gates.refusal("p", "m", "2", {"a": "0"}, [("a", "1"), ("b", "2")]) == (
        "namespace 'p' requires tags a=1, b=2; version 2 of 'm' has a='0', b unset"
    )


@pytest.fixture
async def gated(registry: FakeRegistry, clock: Clock) -> Any:
    settings = make_settings(namespaces={"production": {"require_tags": PASSED}, "*": {}})
    res = Resolver(settings, {"mlflow": registry}, clock_ms=clock)
    yield res
    await res.aclose()


async def test_a_fresh_resolution_to_an_untagged_version_is_denied_403(gated: Resolver) -> None:
    response = await response_to(request(fixture("seldon-seed.yaml"), namespace="production"), resolver=gated)
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert f"{DEMO1}: template {TEMPLATE!r}: namespace 'production' requires tag validation_status=passed; " in message
    assert "version 1 of 'iris demo1' has validation_status unset" in message


async def test_a_tagged_version_is_admitted_and_other_namespaces_are_not_gated(
    gated: Resolver, registry: FakeRegistry
) -> None:
    seed = fixture("seldon-seed.yaml")
    assert (await response_to(request(seed, namespace="default"), resolver=gated))["allowed"] is True
    for name in ("iris demo1", "iris demo2", "iris demo3", "iris demo4"):
        registry.versions[name]["1"].tags.update(PASSED)
    response = await response_to(request(seed, namespace="production"), resolver=gated)
    out = apply_response(seed, response)
    assert jsonpatch.JsonPointer(DEMO1).resolve(out) == seed_uri("iris demo1", 1)
    assert "warnings" not in response


async def test_a_recorded_field_keeps_its_version_when_the_registry_names_an_ungated_one(
    gated: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    seed = fixture("seldon-seed.yaml")
    for name in ("iris demo1", "iris demo2", "iris demo3", "iris demo4"):
        registry.versions[name]["1"].tags.update(PASSED)
    out = apply_response(seed, await response_to(request(seed, namespace="production"), resolver=gated))
    registry.set_alias("iris demo1", "champion", 2)  # version 2 carries no validation tag
    clock.advance(31)
    response = await response_to(request(out, "UPDATE", namespace="production", old=out), resolver=gated)
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == [
        f"{DEMO1}: kept version 1 of 'iris demo1': namespace 'production' requires tag validation_status=passed; "
        "version 2 of 'iris demo1' has validation_status unset"
    ]
    # a changed template is resolved fresh: denied
    changed = copy.deepcopy(out)
    jsonpatch.JsonPointer(DEMO1).set(changed, '{{ mlflow.blob["iris demo1/2"] }}')
    denied = await response_to(request(changed, "UPDATE", namespace="production", old=out), resolver=gated)
    assert denied["allowed"] is False and denied["status"]["code"] == 403
    # records the stored object does not hold are not trusted to stand in: denied
    forged = await response_to(request(out, "CREATE", namespace="production"), resolver=gated)
    assert forged["allowed"] is False and "version 2 of 'iris demo1'" in forged["status"]["message"]


async def test_the_gate_inherits_from_the_default_entry(registry: FakeRegistry, clock: Clock) -> None:
    settings = make_settings(namespaces={"*": {"require_tags": PASSED}, "team": {"models": ["iris*"]}})
    res = Resolver(settings, {"mlflow": registry}, clock_ms=clock)
    obj = fixture("seldon-seed.yaml")
    response = await response_to(request(obj, namespace="team"), resolver=res)
    assert response["status"]["code"] == 403
    assert "namespace 'team' requires tag validation_status=passed" in response["status"]["message"]
    assert f"{GRAPH}/modelUri" in response["status"]["message"]
    await res.aclose()
