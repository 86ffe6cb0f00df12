from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from typing import Any
from unittest.mock import ANY

import jsonpatch
import orjson
import pytest

from tests.support.admitting import response_to
from tests.support.fakes import (
    SEED_MODELS,
    Clock,
    FakeRegistry,
    apply_response,
    decode_patch,
    make_settings,
    seed_uri,
)
from tests.support.reviews import DEMO1, GRAPH, RECONCILER, SEED_POINTERS, fixture, request
from webhook.admission.decision import admit, decide
from webhook.admission.outcome import Outcome
from webhook.registry.clients import Unavailable
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.causes import Cause
from webhook.templating.rollout_annotations import HISTORY
from webhook.templating.uris import Flavor

DOWN = "registry 'mlflow' answered 503: down"


def at(obj: Any, pointer: str) -> Any:
    return jsonpatch.JsonPointer(pointer).resolve(obj)


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = obj["metadata"].get("annotations") or {}
    return result


def resolved_records(obj: dict[str, Any]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = orjson.loads(annotations(obj)[records.RESOLVED])
    return result


def template_records(obj: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = orjson.loads(annotations(obj)[records.TEMPLATES])
    return result


@pytest.fixture
def seed() -> dict[str, Any]:
    return fixture("seldon-seed.yaml")


async def admitted(obj: dict[str, Any], resolver: Resolver, **kw: Any) -> dict[str, Any]:
    response = await response_to(request(obj, **kw), resolver=resolver)
    return apply_response(obj, response)


# --- CREATE --------------------------------------------------------------------


async def test_create_resolves_the_seed_graph(seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry) -> None:
    req = request(seed)
    response = await response_to(req, resolver=resolver)
    assert "uid" not in response  # the edge stamps it
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert "warnings" not in response
    out = apply_response(seed, response)
    for pointer, model in SEED_POINTERS.items():
        assert at(out, pointer) == seed_uri(model, 1)
    assert out["metadata"]["labels"] == {"modelpin.io/managed": "true"}
    assert template_records(out) == {ptr: f'{{{{ mlflow.blob["{m}"] }}}}' for ptr, m in SEED_POINTERS.items()}
    assert resolved_records(out)[DEMO1] == {
        "registry": "mlflow",
        "model": "iris demo1",
        "selector": "@champion",
        "version": "1",
        "run_id": "run-1-1",
        "uri": seed_uri("iris demo1", 1),
    }
    assert set(resolved_records(out)) == set(SEED_POINTERS)
    # everything else is untouched
    out_graph, seed_graph = at(out, GRAPH), at(seed, GRAPH)
    assert out_graph["logger"] == seed_graph["logger"]
    assert out_graph["children"][0]["envSecretRefName"] == "seldon-rclone-secret"
    assert registry.lookups == 4
    # the request object itself is not mutated
    assert at(seed, DEMO1) == '{{ mlflow.blob["iris demo1"] }}'


async def test_readmitting_the_output_gives_no_patch(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    out = await admitted(seed, resolver)
    for operation in ("CREATE", "UPDATE"):
        response = await response_to(request(out, operation), resolver=resolver)
        assert response == {"allowed": True}
    # also after the cache expired, as long as nothing moved in the registry
    clock.advance(3600)
    response = await response_to(request(out, "UPDATE"), resolver=resolver)
    assert "patch" not in response
    assert registry.lookups == 8


async def test_kserve_fields_and_flavor(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.add("proxied", 1, "mlflow-artifacts:/3/abc/artifacts/model", run_id="abc")
    isvc = fixture("isvc-canary.yaml")
    response = await response_to(request(isvc), resolver=resolver)
    out = apply_response(isvc, response)
    assert at(out, "/spec/predictor/model/storageUri") == "s3://mlflow/7/r2/artifacts/model"
    assert at(out, "/spec/predictor/storageUris/0/uri") == "s3://mlflow/7/r2/artifacts/model"
    assert at(out, "/spec/predictor/storageUris/1/uri") == "s3://mlflow/7/r3/artifacts/model"
    assert at(out, "/spec/transformer/containers/0/env/0/value") == "s3://mlflow/7/r3/artifacts/model"
    assert at(out, "/spec/explainer/art/storageUri") == "s3://mlflow-proxied/3/abc/artifacts/model"
    assert at(out, "/spec/canary/0/predictor/model/storageUri") == seed_uri("iris demo1", 1, flavor="kserve")
    assert at(out, "/spec/predictor/storageUris/1/mountPath") == "/mnt/models/latest"
    assert len(template_records(out)) == 6
    assert registry.lookups == 6
    assert "patch" not in await response_to(request(out, "UPDATE"), resolver=resolver)


async def test_trained_model_uses_default_profile(resolver: Resolver) -> None:
    tm = fixture("trainedmodel.yaml")
    out = await admitted(tm, resolver)
    assert out["spec"]["model"]["storageUri"] == "s3://mlflow/7/r2/artifacts/model"
    assert template_records(out) == {"/spec/model/storageUri": "models:/fraud@champion"}


async def test_pattern_profile(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.add("jukebox", 1, "s3://b/j/1", tags={"git_commit": "abc123"})
    registry.set_alias("jukebox", "prod", 1)
    legacy = fixture("isvc-legacy.yaml")
    out = await admitted(legacy, resolver)
    assert out["spec"]["transformer"]["containers"][0]["env"][0]["value"] == "oci://quay.io/rhoai/jukebox:abc123"
    assert out["spec"]["predictor"]["sklearn"]["storageUri"] == "s3://mlflow/7/r2/artifacts/model"


async def test_object_without_templates_gets_no_patch(resolver: Resolver, registry: FakeRegistry) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {"a": "s3://b"}}
    response = await response_to(request(obj), resolver=resolver)
    assert response == {"allowed": True}
    assert registry.lookups == 0


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
async def test_delete_and_connect_are_allowed_without_patch(
    operation: str, resolver: Resolver, registry: FakeRegistry
) -> None:
    req = request(None, operation, kind={"group": "machinelearning.seldon.io", "version": "v1", "kind": "X"})
    req["oldObject"] = fixture("seldon-seed.yaml")
    response = await response_to(req, resolver=resolver)
    assert response == {"allowed": True}
    assert registry.lookups == 0


async def test_dry_run_gives_the_same_answer(seed: dict[str, Any], registry: FakeRegistry, clock: Clock) -> None:
    answers = []
    for dry_run in (True, False, True):
        resolver = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)
        req = request(copy.deepcopy(seed), dry_run=dry_run)
        response = dict(await response_to(req, resolver=resolver))
        answers.append(response)
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["allowed"] is True


async def test_one_lookup_per_distinct_reference(resolver: Resolver, registry: FakeRegistry) -> None:
    obj = {
        "apiVersion": "example.com/v1",  # a kind added by rule: templates anywhere under spec
        "kind": "Custom",
        "metadata": {"name": "x"},
        "spec": {"a": "models:/fraud@champion", "b": '{{ mlflow.s3["fraud@champion"] }}', "c": ["models:/fraud"]},
    }
    out = await admitted(obj, resolver)
    assert registry.lookups == 1
    uri = "s3://mlflow/7/r2/artifacts/model"
    assert out["spec"] == {"a": uri, "b": uri, "c": [uri]}


async def test_escaped_keys_round_trip(resolver: Resolver) -> None:
    obj = {
        "apiVersion": "example.com/v1",  # a kind added by rule: templates anywhere under spec
        "kind": "Custom",
        "metadata": {"name": "x", "annotations": {"keep": "me"}},
        "spec": {"a/b": {"c~d": ["models:/fraud/2"]}},
    }
    out = await admitted(obj, resolver)
    assert out["spec"] == {"a/b": {"c~d": ["s3://mlflow/7/r2/artifacts/model"]}}
    assert template_records(out) == {"/spec/a~1b/c~0d/0": "models:/fraud/2"}
    assert annotations(out)["keep"] == "me"
    assert "patch" not in await response_to(request(out, "UPDATE"), resolver=resolver)


# --- UPDATE ----------------------------------------------------------------------


async def test_update_resolves_a_template_field(seed: dict[str, Any], resolver: Resolver) -> None:
    out = await admitted(seed, resolver)
    changed = copy.deepcopy(out)
    jsonpatch.JsonPointer(DEMO1).set(changed, '{{ mlflow.blob["iris demo1/2"] }}')
    updated = await admitted(changed, resolver, operation="UPDATE")
    assert at(updated, DEMO1) == seed_uri("iris demo1", 2)
    assert template_records(updated)[DEMO1] == '{{ mlflow.blob["iris demo1/2"] }}'
    assert resolved_records(updated)[DEMO1]["version"] == "2"
    assert resolved_records(updated)[DEMO1]["selector"] == "/2"
    for pointer, model in SEED_POINTERS.items():
        if pointer != DEMO1:
            assert at(updated, pointer) == seed_uri(model, 1)


async def test_update_reresolves_a_recorded_uri_when_the_alias_moved(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    out = await admitted(seed, resolver)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)  # floating TTL expired
    response = await response_to(request(out, "UPDATE"), resolver=resolver)
    ops = decode_patch(response)
    assert {"op": "replace", "path": DEMO1, "value": seed_uri("iris demo1", 2)} in ops
    assert not [op for op in ops if op["path"].startswith("/spec") and op["path"] != DEMO1]
    updated = apply_response(out, response)
    assert resolved_records(updated)[DEMO1]["version"] == "2"
    assert resolved_records(updated)[DEMO1]["run_id"] == "run-1-2"
    assert template_records(updated) == template_records(out)


async def test_update_literal_override_drops_its_records(seed: dict[str, Any], resolver: Resolver) -> None:
    out = await admitted(seed, resolver)
    changed = copy.deepcopy(out)
    jsonpatch.JsonPointer(DEMO1).set(changed, "wasbs://artifacts/hand/picked")
    updated = await admitted(changed, resolver, operation="UPDATE")
    assert at(updated, DEMO1) == "wasbs://artifacts/hand/picked"
    assert DEMO1 not in template_records(updated)
    assert DEMO1 not in resolved_records(updated)
    assert len(template_records(updated)) == 3
    assert updated["metadata"]["labels"] == {"modelpin.io/managed": "true"}


async def test_update_overriding_every_field_unmanages_the_object(seed: dict[str, Any], resolver: Resolver) -> None:
    out = await admitted(seed, resolver)
    out["metadata"].setdefault("labels", {})["app"] = "iris"
    changed = copy.deepcopy(out)
    for pointer in SEED_POINTERS:
        jsonpatch.JsonPointer(pointer).set(changed, "wasbs://artifacts/literal")
    updated = await admitted(changed, resolver, operation="UPDATE", old=out)
    assert updated["metadata"]["labels"] == {"app": "iris"}
    # only the history is left, its last entry per field the edit
    assert set(annotations(updated)) == {HISTORY}
    history = orjson.loads(annotations(updated)[HISTORY])
    assert {p: entries[-1]["cause"] for p, entries in history.items()} == dict.fromkeys(SEED_POINTERS, "edit")
    assert history[DEMO1][-1] == {"version": "", "uri": "wasbs://artifacts/literal", "at": ANY, "cause": "edit"}
    assert at(updated, DEMO1) == "wasbs://artifacts/literal"


async def test_paused_keeps_versions_although_the_alias_moved(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    out = await admitted(seed, resolver)
    out["metadata"]["annotations"][records.PAUSED] = "true"
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    lookups = registry.lookups
    response = await response_to(request(out, "UPDATE", old=out), resolver=resolver)
    assert response == {"allowed": True}
    # a re-apply from git brings the templates back: still the recorded versions
    reapplied = copy.deepcopy(seed)
    reapplied["metadata"] = copy.deepcopy(out["metadata"])
    kept = await admitted(reapplied, resolver, operation="UPDATE", old=out)
    assert at(kept, DEMO1) == seed_uri("iris demo1", 1)
    assert resolved_records(kept) == resolved_records(out)
    assert registry.lookups == lookups


async def test_paused_with_changed_template_text_resolves(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    out = await admitted(seed, resolver)
    out["metadata"]["annotations"][records.PAUSED] = "true"
    registry.set_alias("iris demo1", "champion", 2)
    registry.set_alias("iris demo2", "champion", 2)
    clock.advance(31)
    changed = copy.deepcopy(out)
    jsonpatch.JsonPointer(DEMO1).set(changed, '{{ mlflow.blob["iris demo1@champion"] }}')
    updated = await admitted(changed, resolver, operation="UPDATE", old=out)
    assert at(updated, DEMO1) == seed_uri("iris demo1", 2)
    assert template_records(updated)[DEMO1] == '{{ mlflow.blob["iris demo1@champion"] }}'
    # the untouched, paused fields keep their versions
    assert at(updated, f"{GRAPH}/children/0/children/0/modelUri") == seed_uri("iris demo2", 1)
    assert updated["metadata"]["annotations"][records.PAUSED] == "true"


async def test_refresh_annotation_bypasses_the_cache(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    fetched = clock.ms
    out = await admitted(seed, resolver)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(1)  # well within the floating TTL
    assert "patch" not in await response_to(request(out, "UPDATE"), resolver=resolver)
    touched = copy.deepcopy(out)
    touched["metadata"]["annotations"][records.REFRESH] = str(fetched + 500)
    updated = await admitted(touched, resolver, operation="UPDATE", old=out, username=RECONCILER)
    assert at(updated, DEMO1) == seed_uri("iris demo1", 2)
    assert at(updated, f"{GRAPH}/modelUri") == seed_uri("iris demo4", 1)
    assert registry.lookups == 8


async def test_registry_down_keeps_recorded_values_with_warning(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    out = await admitted(seed, resolver)
    registry.fail_with(Unavailable(DOWN))
    cold = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)  # another replica: empty cache
    response = await response_to(request(out, "UPDATE", old=out), resolver=cold)
    assert response["allowed"] is True
    assert "patch" not in response
    # one per field, in the order the fields appear in the object
    assert sorted(response["warnings"]) == sorted(
        f"{pointer}: kept version 1 of {model!r}: {DOWN}, and no usable cached resolution"
        for pointer, model in SEED_POINTERS.items()
    )


async def test_registry_down_with_template_equal_to_record_keeps_it(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    out = await admitted(seed, resolver)
    reapplied = copy.deepcopy(seed)
    reapplied["metadata"] = copy.deepcopy(out["metadata"])
    registry.fail_with(Unavailable(DOWN))
    cold = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)
    response = await response_to(request(reapplied, "UPDATE", old=out), resolver=cold)
    kept = apply_response(reapplied, response)
    assert at(kept, DEMO1) == seed_uri("iris demo1", 1)
    assert len(response["warnings"]) == 4
    # a changed template has nothing recorded to fall back on
    jsonpatch.JsonPointer(DEMO1).set(reapplied, '{{ mlflow.blob["iris demo1/2"] }}')
    response = await response_to(request(reapplied, "UPDATE", old=out), resolver=cold)
    assert response["allowed"] is False
    assert response["status"]["code"] == 503
    assert response["status"]["message"] == (
        "modelpin could not resolve 1 template: "
        f"{DEMO1}: template '{{{{ mlflow.blob[\"iris demo1/2\"] }}}}': {DOWN}, and no usable cached resolution"
    )


async def test_registry_down_serves_stale_cache_with_one_warning_per_reference(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    obj = {
        "apiVersion": "example.com/v1",  # a kind added by rule: templates anywhere under spec
        "kind": "Custom",
        "metadata": {"name": "x"},
        "spec": {"a": "models:/fraud@champion", "b": '{{ mlflow.s3["fraud@champion"] }}'},
    }
    await admitted(copy.deepcopy(obj), resolver)
    registry.fail_with(Unavailable(DOWN))
    clock.advance(40)
    response = await response_to(request(obj), resolver=resolver)
    out = apply_response(obj, response)
    assert out["spec"] == {"a": "s3://mlflow/7/r2/artifacts/model", "b": "s3://mlflow/7/r2/artifacts/model"}
    assert response["warnings"] == [f"fraud@champion: {DOWN}; serving version 2 resolved 40s ago"]


async def test_hanging_registry_answers_within_the_deadline(
    seed: dict[str, Any], registry: FakeRegistry, clock: Clock
) -> None:
    resolver = Resolver(make_settings(lookup_deadline_seconds=0.2), {"mlflow": registry}, clock_ms=clock)
    gate = registry.hang()
    started = time.monotonic()
    response = await response_to(request(seed), resolver=resolver)
    assert time.monotonic() - started < 0.4
    assert response["allowed"] is False
    assert response["status"]["code"] == 503
    assert response["status"]["message"].startswith("modelpin could not resolve 4 templates: ")
    assert "did not answer within the lookup deadline" in response["status"]["message"]
    gate.set()
    await resolver.aclose()


# --- denials ----------------------------------------------------------------------


def one_field(value: str, group: str = "serving.kserve.io/v1beta1") -> dict[str, Any]:
    return {
        "apiVersion": group,
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {"predictor": {"model": {"storageUri": value}}},
    }


async def test_unknown_model_is_404(resolver: Resolver) -> None:
    text = '{{ mlflow.s3["nope@champion"] }}'
    response = await response_to(request(one_field(text)), resolver=resolver)
    assert response["allowed"] is False
    status = response["status"]
    assert (status["code"], status["reason"]) == (404, "NotFound")
    # the registry's own words may follow the cause; the field, template and cause come first
    assert status["message"].startswith(
        "modelpin could not resolve 1 template: /spec/predictor/model/storageUri: template "
        "'{{ mlflow.s3[\"nope@champion\"] }}': model 'nope' has no alias 'champion'"
    )
    assert "patch" not in response


async def test_policy_is_403(resolver: Resolver) -> None:
    response = await response_to(request(one_field("models:/jukebox/1"), namespace="restricted"), resolver=resolver)
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    assert response["status"]["message"] == (
        "modelpin could not resolve 1 template: /spec/predictor/model/storageUri: template 'models:/jukebox/1': "
        "namespace 'restricted' may not use model 'jukebox' (allowed patterns: ['fraud*'])"
    )


async def test_parse_error_is_422_with_column(resolver: Resolver) -> None:
    text = '{{ mlflow.s3["fraud/Prod"] }}'
    response = await response_to(request(one_field(text)), resolver=resolver)
    assert response["status"]["code"] == 422
    assert response["status"]["reason"] == "Invalid"
    message = response["status"]["message"]
    assert message.startswith(
        "modelpin could not resolve 1 template: /spec/predictor/model/storageUri: template "
        "'{{ mlflow.s3[\"fraud/Prod\"] }}' does not parse: unknown selector 'Prod'"
    )
    assert message.endswith(f"at column {text.index('Prod') + 1}")


async def test_namespace_from_object_when_request_has_none(resolver: Resolver) -> None:
    obj = one_field("models:/jukebox/1")
    obj["metadata"]["namespace"] = "restricted"
    req = request(obj)
    del req["namespace"]
    assert (await response_to(req, resolver=resolver))["status"]["code"] == 403


async def test_missing_default_selector_is_422(registry: FakeRegistry, clock: Clock) -> None:
    resolver = Resolver(make_settings(default_selector=None), {"mlflow": registry}, clock_ms=clock)
    response = await response_to(request(fixture("seldon-seed.yaml"), namespace="team"), resolver=resolver)
    assert response["status"]["code"] == 422
    assert "'iris demo4' names no version and neither namespace 'team' nor the global" in response["status"]["message"]


async def test_several_errors_are_all_named(resolver: Resolver) -> None:
    obj = one_field("models:/nope/1")
    obj["spec"]["transformer"] = {"containers": [{"name": "t", "env": [{"name": "STORAGE_URI", "value": "{{ broken"}]}]}
    response = await response_to(request(obj), resolver=resolver)
    message = response["status"]["message"]
    assert message.startswith("modelpin could not resolve 2 templates: ")
    assert "/spec/transformer/containers/0/env/0/value: template '{{ broken' does not parse: " in message
    assert "/spec/predictor/model/storageUri: template 'models:/nope/1': model 'nope' has no version 1" in message
    # the code is the first error's: the parse error was found at planning time
    assert response["status"]["code"] == 422


async def test_registry_down_without_anything_usable_is_503(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.fail_with(Unavailable(DOWN))
    response = await response_to(request(one_field("models:/fraud@champion")), resolver=resolver)
    assert response["status"] == {
        "code": 503,
        "reason": "ServiceUnavailable",
        "message": "modelpin could not resolve 1 template: /spec/predictor/model/storageUri: template "
        f"'models:/fraud@champion': {DOWN}, and no usable cached resolution",
    }


async def test_damaged_records_become_warnings(resolver: Resolver) -> None:
    obj = one_field("models:/fraud@champion")
    obj["metadata"]["annotations"] = {records.TEMPLATES: "{oops"}
    response = await response_to(request(obj), resolver=resolver)
    assert response["allowed"] is True
    assert response["warnings"] == ["ignored annotation modelpin.io/templates: not JSON"]
    out = apply_response(obj, response)
    assert template_records(out) == {"/spec/predictor/model/storageUri": "models:/fraud@champion"}


async def test_recorded_template_that_no_longer_parses_is_dropped(resolver: Resolver) -> None:
    obj = one_field("s3://kept")
    obj["metadata"]["annotations"] = {
        records.TEMPLATES: records.dumps({"/spec/predictor/model/storageUri": "{{ bad"}),
        records.RESOLVED: records.dumps({"/spec/predictor/model/storageUri": {"uri": "s3://kept"}}),
    }
    response = await response_to(request(obj, "UPDATE"), resolver=resolver)
    assert response["warnings"] == [
        "/spec/predictor/model/storageUri: dropped a recorded template that no longer parses: '{{ bad'"
    ]
    out = apply_response(obj, response)
    assert out["spec"]["predictor"]["model"]["storageUri"] == "s3://kept"
    assert records.TEMPLATES not in annotations(out)


async def test_decide_directly(resolver: Resolver) -> None:
    async def decided(value: str) -> Outcome:
        obj, settings = one_field(value), resolver.settings
        return await decide(obj, namespace="default", flavor=Flavor.KSERVE, resolver=resolver, settings=settings)

    outcome = await decided("models:/fraud/2")
    assert outcome.errors == []
    assert outcome.values == {"/spec/predictor/model/storageUri": "s3://mlflow/7/r2/artifacts/model"}
    assert outcome.templates == {"/spec/predictor/model/storageUri": "models:/fraud/2"}
    assert outcome.results == {"resolved": 1}
    outcome = await decided("models:/fraud/99")
    assert [cause for cause, _ in outcome.errors] == [Cause.NOT_FOUND]


async def test_concurrent_admissions_share_lookups(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry
) -> None:
    gate = registry.hang()
    tasks = [asyncio.create_task(response_to(request(copy.deepcopy(seed)), resolver=resolver)) for _ in range(20)]
    await asyncio.sleep(0.01)
    gate.set()
    responses = await asyncio.gather(*tasks)
    assert all(r["allowed"] for r in responses)
    assert len({r["patch"] for r in responses}) == 1
    assert registry.lookups == len(SEED_MODELS)


async def test_non_ascii_digit_version_is_denied(resolver: Resolver) -> None:
    response = await response_to(request(one_field("models:/fraud/²")), resolver=resolver)
    assert response["status"]["code"] == 422


async def test_a_registered_version_linked_to_a_logged_model_records_its_model_id(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    registry.add("linked", 1, "s3://b/linked/1", run_id="r1", model_id="m-0123abcd")
    registry.set_alias("linked", "champion", 1)
    obj = one_field('{{ mlflow.s3["linked@champion"] }}')
    out = await admitted(obj, resolver)
    entry = resolved_records(out)["/spec/predictor/model/storageUri"]
    assert entry["model_id"] == "m-0123abcd"
    assert entry["version"] == "1"
    # the record read back keeps it: re-admission, also from a kept record while the registry is down
    assert await response_to(request(out, "UPDATE", old=out), resolver=resolver) == {"allowed": True}
    clock.advance(3600)
    registry.failure = Unavailable(DOWN, "http_503")
    response = await response_to(request(out, "UPDATE", old=out), resolver=resolver)
    assert "patch" not in response and response["allowed"] is True


async def test_a_version_without_a_linked_logged_model_records_no_model_id(resolver: Resolver) -> None:
    out = await admitted(one_field('{{ mlflow.s3["fraud@champion"] }}'), resolver)
    assert "model_id" not in resolved_records(out)["/spec/predictor/model/storageUri"]


# --- resolution results, tallied for the edge to count ------------------------------


async def results(req: dict[str, Any], resolver: Resolver) -> Counter[str]:
    return (await admit(req, resolver=resolver, settings=resolver.settings)).results


async def test_admission_tallies_each_fields_resolution_result(
    seed: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    assert await results(request(seed), resolver) == {"resolved": 4}
    out = await admitted(seed, resolver)
    broken = copy.deepcopy(seed)
    jsonpatch.JsonPointer(DEMO1).set(broken, "{{ broken")
    assert await results(request(broken), resolver) == {"resolved": 3, "invalid": 1}
    assert await results(request(one_field("models:/jukebox/1"), namespace="restricted"), resolver) == {"policy": 1}
    paused = copy.deepcopy(out)
    paused["metadata"]["annotations"][records.PAUSED] = "true"
    assert await results(request(paused, "UPDATE", old=paused), resolver) == {"paused": 4}
    registry.fail_with(Unavailable(DOWN))
    cold = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)  # another replica: empty cache
    assert await results(request(out, "UPDATE", old=out), cold) == {"recorded": 4}
    assert await results(request(out, "DELETE"), resolver) == {}
