"""Hostile objects get clear answers: a 4xx denial naming the cause, or a correct resolution."""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.support.admitting import response_to
from tests.support.fakes import Clock, FakeRegistry, make_settings
from tests.support.reviews import RECONCILER, fixture, request
from webhook.admission.decision import REFRESH_SKEW_MS
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.grammar import MAX_TEMPLATE_BYTES

URI = "s3://mlflow/7/r2/artifacts/model"


def isvc(value: Any = "models:/fraud/2", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "x", **metadata},
        "spec": {"predictor": {"model": {"storageUri": value}}},
    }


def applied(obj: dict[str, Any], response: Any) -> dict[str, Any]:
    assert response["allowed"], response
    ops = orjson.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    out: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    return out


def denial(response: Any) -> tuple[int, str]:
    assert response["allowed"] is False, response
    return response["status"]["code"], response["status"]["message"]


@pytest.mark.parametrize("spec", ["models:/x", "{{", "\u00a0models:/fraud/2"])
async def test_a_spec_that_is_a_template_is_refused(resolver: Resolver, spec: str) -> None:
    obj = isvc()
    obj["spec"] = spec
    code, message = denial(await response_to(request(obj), resolver=resolver))
    assert code == 422 and "spec is the string" in message


@pytest.mark.parametrize("metadata", [None, False, [], "x", 3])
async def test_metadata_that_is_not_an_object_is_refused(resolver: Resolver, metadata: Any) -> None:
    obj = isvc()
    obj["metadata"] = metadata
    code, message = denial(await response_to(request(obj), resolver=resolver))
    assert code == 422 and "metadata is" in message and "not an object" in message


@pytest.mark.parametrize("field", ["annotations", "labels"])
@pytest.mark.parametrize("value", [[], "x", False, 1])
async def test_annotations_or_labels_not_objects_are_refused(resolver: Resolver, field: str, value: Any) -> None:
    code, message = denial(await response_to(request(isvc(**{field: value})), resolver=resolver))
    assert code == 422 and f"metadata.{field} is" in message


async def test_null_labels_and_annotations_get_a_patch_that_applies(resolver: Resolver) -> None:
    obj = isvc(labels=None, annotations=None)
    out = applied(obj, await response_to(request(obj), resolver=resolver))
    assert out["spec"]["predictor"]["model"]["storageUri"] == URI
    assert out["metadata"]["labels"][records.MANAGED] == "true"


async def test_a_recorded_uri_that_is_a_template_is_never_written_back(resolver: Resolver) -> None:
    pointer = "/spec/predictor/model/storageUri"
    obj = isvc(
        "s3://user/literal",
        annotations={
            records.TEMPLATES: records.dumps({pointer: "models:/fraud/2"}),
            records.RESOLVED: records.dumps({pointer: {"uri": "models:/evil/1"}}),
        },
    )
    obj["spec"]["predictor"]["model"]["storageUri"] = "models:/evil/1"
    response = await response_to(request(obj, "UPDATE"), resolver=resolver)
    # the field holds a template itself: it is resolved as one (and the forged record is reported)
    code, message = denial(response)
    assert code == 404 and "evil" in message
    assert any("itself a template" in w for w in response.get("warnings", []))


@pytest.mark.parametrize("lead", ["\v", "\u00a0", "\u3000", "\x1c", "\u2028 \t"])
async def test_a_template_behind_any_unicode_whitespace_is_resolved(resolver: Resolver, lead: str) -> None:
    obj = isvc(lead + "models:/fraud/2")
    out = applied(obj, await response_to(request(obj), resolver=resolver))
    assert out["spec"]["predictor"]["model"]["storageUri"] == URI


async def test_a_version_of_thousands_of_digits_is_a_422(resolver: Resolver) -> None:
    code, message = denial(await response_to(request(isvc("models:/fraud/" + "9" * 4000)), resolver=resolver))
    assert code == 422 and "longer than 19 digits" in message
    assert len(message) < 1000


async def test_a_template_past_the_byte_limit_is_refused_before_parsing(resolver: Resolver) -> None:
    text = "models:/" + "n" * (1 << 20) + "@champion"
    code, message = denial(await response_to(request(isvc(text)), resolver=resolver))
    assert code == 422 and f"longer than {MAX_TEMPLATE_BYTES} bytes" in message and len(message) < 1000


@pytest.mark.parametrize("kind", ["InferenceService", "Custom"])
async def test_a_spec_nested_a_thousand_levels(resolver: Resolver, kind: str) -> None:
    deep: dict[str, Any] = {"leaf": "models:/fraud/2"}
    for _ in range(1000):
        deep = {"a": deep}
    obj = {"apiVersion": "serving.kserve.io/v1beta1", "kind": kind, "metadata": {"name": "x"}, "spec": deep}
    response = await response_to(
        request(obj, kind={"group": "serving.kserve.io", "version": "v1beta1", "kind": kind}), resolver=resolver
    )
    if kind == "InferenceService":
        code, message = denial(response)
        assert code == 422 and "not in a field where modelpin resolves templates" in message
    else:  # a kind added by rule: resolved wherever it stands
        ops = orjson.loads(base64.b64decode(response["patch"]))
        assert ops[0]["op"] == "replace" and ops[0]["value"] == URI and ops[0]["path"].count("/a") == 1000


async def test_a_template_off_the_declared_paths_is_refused_naming_the_field(resolver: Resolver) -> None:
    obj = isvc()
    obj["spec"]["predictor"]["model"]["args"] = ["{{ mlflow.s3['fraud/2'] }}"]
    code, message = denial(await response_to(request(obj), resolver=resolver))
    assert code == 422 and "/spec/predictor/model/args/0" in message


async def test_the_kserve_canary_predictor_is_resolved(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.add("proxied", 1, "mlflow-artifacts:/3/abc/artifacts/model", run_id="abc")
    obj = fixture("isvc-canary.yaml")
    out = applied(obj, await response_to(request(obj), resolver=resolver))
    assert out["spec"]["canary"][0]["predictor"]["model"]["storageUri"].startswith("https://")
    assert out["spec"]["canary"][0]["trafficPercent"] == 10


async def test_a_refresh_token_in_the_future_is_treated_as_now(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    await response_to(request(isvc("models:/fraud@champion")), resolver=resolver)
    assert registry.lookups == 1
    clock.advance(1)
    # a token a little ahead (clock skew) is honoured: the cached entry is older
    near = isvc("models:/fraud@champion", annotations={records.REFRESH: str(clock() + REFRESH_SKEW_MS - 1)})
    applied(near, await response_to(request(near, username=RECONCILER), resolver=resolver))
    assert registry.lookups == 2
    # one far ahead is treated as now, with a warning: not as "every cache entry is too old, forever"
    far = isvc("models:/fraud@champion", annotations={records.REFRESH: str(clock() + 10**12)})
    response = await response_to(request(far, username=RECONCILER), resolver=resolver)
    applied(far, response)
    assert any("in the future" in w for w in response["warnings"])
    assert registry.lookups == 2  # served from the entry fetched a moment ago, not looked up again
    for _ in range(5):  # every admission with the forged token, a second apart: still cached
        clock.advance(1)
        applied(far, await response_to(request(far, username=RECONCILER), resolver=resolver))
    assert registry.lookups == 2
    clock.advance(REFRESH_SKEW_MS / 1000)  # past the skew: one fresh lookup, then cached again
    for _ in range(3):
        applied(far, await response_to(request(far, username=RECONCILER), resolver=resolver))
    assert registry.lookups == 3


# --- how many references one review may name -------------------------------------


async def test_references_past_the_limit_are_refused_before_any_lookup(registry: FakeRegistry, clock: Clock) -> None:
    seed = fixture("seldon-seed.yaml")  # four distinct references
    limited = Resolver(make_settings(max_references_per_review=3), {"mlflow": registry}, clock_ms=clock)
    code, message = denial(await response_to(request(seed), resolver=limited))
    assert code == 422
    assert message == (
        "modelpin cannot admit this object: it names 4 distinct registry references, over the limit of 3 "
        "per object (setting max_references_per_review)"
    )
    assert registry.lookups == 0
    await limited.aclose()
    enough = Resolver(make_settings(max_references_per_review=4), {"mlflow": registry}, clock_ms=clock)
    assert (await response_to(request(seed), resolver=enough))["allowed"] is True
    await enough.aclose()


async def test_the_limit_counts_distinct_references_not_fields(registry: FakeRegistry, clock: Clock) -> None:
    obj = isvc("models:/fraud/2")
    obj["spec"]["predictor"]["storageUris"] = [{"uri": "{{ mlflow.s3['fraud/2'] }}", "mountPath": "/mnt/a"}]
    one = Resolver(make_settings(max_references_per_review=1), {"mlflow": registry}, clock_ms=clock)
    assert (await response_to(request(obj), resolver=one))["allowed"] is True
    await one.aclose()


# --- the refresh token is the reconciler's ----------------------------------------


async def test_a_users_refresh_token_does_not_defeat_the_cache(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    stored = applied(
        isvc("models:/fraud@champion"), await response_to(request(isvc("models:/fraud@champion")), resolver=resolver)
    )
    assert registry.lookups == 1
    for _ in range(10):
        clock.advance(0.1)
        touched = copy.deepcopy(stored)
        touched["metadata"]["annotations"][records.REFRESH] = str(clock())
        response = await response_to(request(touched, "UPDATE", old=stored, username="alice"), resolver=resolver)
        ops = orjson.loads(base64.b64decode(response["patch"]))
        assert ops == [{"op": "remove", "path": "/metadata/annotations/modelpin.io~1refresh"}]
        assert response["warnings"] == [f"{records.REFRESH} is written only by {RECONCILER}: removed"]
    assert registry.lookups == 1
    # the reconciler's token is honoured: the entry fetched before it is not used
    clock.advance(0.1)
    touched = copy.deepcopy(stored)
    touched["metadata"]["annotations"][records.REFRESH] = str(clock())
    response = await response_to(request(touched, "UPDATE", old=stored, username=RECONCILER), resolver=resolver)
    assert "warnings" not in response
    assert registry.lookups == 2


async def test_a_changed_token_is_set_back_to_the_old_one(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    old_token = str(clock() - 60_000)
    stored = applied(
        isvc("models:/fraud@champion", annotations={records.REFRESH: old_token}),
        await response_to(
            request(isvc("models:/fraud@champion", annotations={records.REFRESH: old_token}), username=RECONCILER),
            resolver=resolver,
        ),
    )
    assert registry.lookups == 1
    for sent in (str(clock()), None, "not a token"):
        touched = copy.deepcopy(stored)
        if sent is None:
            del touched["metadata"]["annotations"][records.REFRESH]
        else:
            touched["metadata"]["annotations"][records.REFRESH] = sent
        response = await response_to(request(touched, "UPDATE", old=stored), resolver=resolver)
        out = applied(touched, response)
        assert out["metadata"]["annotations"][records.REFRESH] == old_token
        assert f"{records.REFRESH} is written only by {RECONCILER}: set back to {old_token!r}" in response["warnings"]
    assert registry.lookups == 1


async def test_a_token_on_create_by_anyone_else_is_removed(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    obj = isvc(annotations={records.REFRESH: str(clock())})
    out = applied(obj, await response_to(request(obj), resolver=resolver))
    assert records.REFRESH not in out["metadata"]["annotations"]


async def test_an_unchanged_token_is_used_as_is(resolver: Resolver, registry: FakeRegistry, clock: Clock) -> None:
    await response_to(request(isvc("models:/fraud@champion")), resolver=resolver)
    assert registry.lookups == 1
    clock.advance(1)
    obj = isvc("models:/fraud@champion", annotations={records.REFRESH: str(clock())})
    response = await response_to(request(obj, "UPDATE", old=copy.deepcopy(obj), username="alice"), resolver=resolver)
    assert response["allowed"] and "warnings" not in response
    assert registry.lookups == 2  # the token is newer than the cached entry: looked up again
    assert records.REFRESH in applied(obj, response)["metadata"]["annotations"]


# --- records are trusted only when the stored object has them --------------------

POINTER = "/spec/predictor/model/storageUri"
FORGED = "s3://forged/model"


def forged(value: str, template: str = "models:/missing/1", **annotations: str) -> dict[str, Any]:
    record = {"registry": "mlflow", "model": "missing", "selector": "/1", "version": "1", "run_id": "r", "uri": FORGED}
    return isvc(
        value,
        annotations={
            records.TEMPLATES: records.dumps({POINTER: template}),
            records.RESOLVED: records.dumps({POINTER: record}),
            **annotations,
        },
    )


@pytest.mark.parametrize("value", [FORGED, "models:/missing/1"])
async def test_a_create_cannot_carry_its_own_resolution_of_a_missing_model(resolver: Resolver, value: str) -> None:
    code, message = denial(await response_to(request(forged(value)), resolver=resolver))
    assert code == 404 and "missing" in message


async def test_an_update_falls_back_only_on_the_stored_objects_record(resolver: Resolver) -> None:
    obj = forged(FORGED)
    # the stored object has no such record: the one sent is not trusted
    code, _ = denial(await response_to(request(obj, "UPDATE", old=isvc(FORGED)), resolver=resolver))
    assert code == 404
    # a record the stored object holds too is the object's own: kept, with a warning
    response = await response_to(request(obj, "UPDATE", old=copy.deepcopy(obj)), resolver=resolver)
    assert applied(obj, response)["spec"]["predictor"]["model"]["storageUri"] == FORGED
    assert any("kept version 1 of 'missing'" in w for w in response["warnings"])
    # the same template, but a different recorded entry than the stored one
    other = forged(FORGED)
    stored = copy.deepcopy(other)
    stored["metadata"]["annotations"][records.RESOLVED] = records.dumps({POINTER: {"uri": FORGED, "version": "2"}})
    code, _ = denial(await response_to(request(other, "UPDATE", old=stored), resolver=resolver))
    assert code == 404


@pytest.mark.parametrize("value", [FORGED, "models:/fraud/2"])
async def test_paused_keeps_only_the_stored_objects_record(resolver: Resolver, value: str) -> None:
    obj = forged(value, "models:/fraud/2", **{records.PAUSED: "true"})
    response = await response_to(request(obj), resolver=resolver)
    assert applied(obj, response)["spec"]["predictor"]["model"]["storageUri"] == URI
    assert any(f"resolved although {records.PAUSED} is set" in w for w in response["warnings"])
    # on UPDATE of an object that already held the record, paused keeps it
    response = await response_to(request(obj, "UPDATE", old=copy.deepcopy(obj)), resolver=resolver)
    assert applied(obj, response)["spec"]["predictor"]["model"]["storageUri"] == FORGED


# --- the apiserver's annotation limit ----------------------------------------------


async def test_records_past_the_annotation_limit_are_refused(resolver: Resolver) -> None:
    written = applied(isvc(), await response_to(request(isvc()), resolver=resolver))["metadata"]["annotations"]
    records_bytes = sum(len(k) + len(v) for k, v in written.items())
    limit = 256 * 1024
    # one byte over the limit with the records: refused, naming the size
    obj = isvc(annotations={"notes": "x" * (limit - records_bytes - len("notes") + 1)})
    code, message = denial(await response_to(request(obj), resolver=resolver))
    assert code == 422
    assert message == (
        f"modelpin cannot admit this object: modelpin's records would make metadata.annotations {limit + 1} bytes, "
        "over the apiserver's 262144-byte limit; split the object or use fewer templates"
    )
    # exactly at the limit: admitted
    at_limit = isvc(annotations={"notes": "x" * (limit - records_bytes - len("notes"))})
    assert (await response_to(request(at_limit), resolver=resolver))["allowed"] is True
    # counted in UTF-8 bytes, not characters: two-byte characters past the limit are refused
    wide = isvc(annotations={"notes": "\u00e9" * ((limit - records_bytes - len("notes")) // 2 + 1)})
    code, message = denial(await response_to(request(wide), resolver=resolver))
    assert code == 422 and "over the apiserver's 262144-byte limit" in message
    # without records to write, the object is not modelpin's to refuse
    plain = isvc("s3://literal", annotations={"notes": "x" * limit})
    assert (await response_to(request(plain), resolver=resolver)) == {"allowed": True}


# --- the reconciler may only refresh -------------------------------------------------


async def test_the_reconciler_may_change_only_template_fields(resolver: Resolver) -> None:
    stored = applied(isvc(), await response_to(request(isvc()), resolver=resolver))
    changed = copy.deepcopy(stored)
    changed["spec"]["predictor"]["containers"] = [{"name": "c", "image": "evil:1"}]
    changed["spec"]["predictor"]["minReplicas"] = 0
    code, message = denial(
        await response_to(request(changed, "UPDATE", old=stored, username=RECONCILER), resolver=resolver)
    )
    assert code == 403
    assert message.startswith(f"{RECONCILER} may change only the template fields of spec; changed: ")
    assert "/spec/predictor/containers" in message and "/spec/predictor/minReplicas" in message
    # anyone else may change the spec
    assert (await response_to(request(changed, "UPDATE", old=stored, username="alice"), resolver=resolver))["allowed"]
    # and the reconciler its token, with the template fields re-resolved
    touched = copy.deepcopy(stored)
    touched["metadata"]["annotations"][records.REFRESH] = "1"
    assert (await response_to(request(touched, "UPDATE", old=stored, username=RECONCILER), resolver=resolver))[
        "allowed"
    ]
