"""Hostile objects get clear answers: a 4xx denial naming the cause, or a correct resolution."""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.support.fakes import Clock, FakeRegistry
from tests.support.reviews import fixture, request
from webhook.admission.decision import REFRESH_SKEW_MS, admit
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
    code, message = denial(await admit(request(obj), resolver=resolver))
    assert code == 422 and "spec is the string" in message


@pytest.mark.parametrize("metadata", [None, False, [], "x", 3])
async def test_metadata_that_is_not_an_object_is_refused(resolver: Resolver, metadata: Any) -> None:
    obj = isvc()
    obj["metadata"] = metadata
    code, message = denial(await admit(request(obj), resolver=resolver))
    assert code == 422 and "metadata is" in message and "not an object" in message


@pytest.mark.parametrize("field", ["annotations", "labels"])
@pytest.mark.parametrize("value", [[], "x", False, 1])
async def test_annotations_or_labels_not_objects_are_refused(resolver: Resolver, field: str, value: Any) -> None:
    code, message = denial(await admit(request(isvc(**{field: value})), resolver=resolver))
    assert code == 422 and f"metadata.{field} is" in message


async def test_null_labels_and_annotations_get_a_patch_that_applies(resolver: Resolver) -> None:
    obj = isvc(labels=None, annotations=None)
    out = applied(obj, await admit(request(obj), resolver=resolver))
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
    response = await admit(request(obj, "UPDATE"), resolver=resolver)
    # the field holds a template itself: it is resolved as one (and the forged record is reported)
    code, message = denial(response)
    assert code == 404 and "evil" in message
    assert any("itself a template" in w for w in response.get("warnings", []))


@pytest.mark.parametrize("lead", ["\v", "\u00a0", "\u3000", "\x1c", "\u2028 \t"])
async def test_a_template_behind_any_unicode_whitespace_is_resolved(resolver: Resolver, lead: str) -> None:
    obj = isvc(lead + "models:/fraud/2")
    out = applied(obj, await admit(request(obj), resolver=resolver))
    assert out["spec"]["predictor"]["model"]["storageUri"] == URI


async def test_a_version_of_thousands_of_digits_is_a_422(resolver: Resolver) -> None:
    code, message = denial(await admit(request(isvc("models:/fraud/" + "9" * 4000)), resolver=resolver))
    assert code == 422 and "longer than 19 digits" in message
    assert len(message) < 1000


async def test_a_template_past_the_byte_limit_is_refused_before_parsing(resolver: Resolver) -> None:
    text = "models:/" + "n" * (1 << 20) + "@champion"
    code, message = denial(await admit(request(isvc(text)), resolver=resolver))
    assert code == 422 and f"longer than {MAX_TEMPLATE_BYTES} bytes" in message and len(message) < 1000


@pytest.mark.parametrize("kind", ["InferenceService", "Custom"])
async def test_a_spec_nested_a_thousand_levels(resolver: Resolver, kind: str) -> None:
    deep: dict[str, Any] = {"leaf": "models:/fraud/2"}
    for _ in range(1000):
        deep = {"a": deep}
    obj = {"apiVersion": "serving.kserve.io/v1beta1", "kind": kind, "metadata": {"name": "x"}, "spec": deep}
    response = await admit(
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
    code, message = denial(await admit(request(obj), resolver=resolver))
    assert code == 422 and "/spec/predictor/model/args/0" in message


async def test_the_kserve_canary_predictor_is_resolved(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.add("proxied", 1, "mlflow-artifacts:/3/abc/artifacts/model", run_id="abc")
    obj = fixture("isvc-canary.yaml")
    out = applied(obj, await admit(request(obj), resolver=resolver))
    assert out["spec"]["canary"][0]["predictor"]["model"]["storageUri"].startswith("https://")
    assert out["spec"]["canary"][0]["trafficPercent"] == 10


async def test_a_refresh_token_in_the_future_is_treated_as_now(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    await admit(request(isvc("models:/fraud@champion")), resolver=resolver)
    assert registry.lookups == 1
    clock.advance(1)
    # a token a little ahead (clock skew) is honoured: the cached entry is older
    near = isvc("models:/fraud@champion", annotations={records.REFRESH: str(clock() + REFRESH_SKEW_MS - 1)})
    applied(near, await admit(request(near), resolver=resolver))
    assert registry.lookups == 2
    # one far ahead is treated as now, with a warning: not as "every cache entry is too old, forever"
    far = isvc("models:/fraud@champion", annotations={records.REFRESH: str(clock() + 10**12)})
    response = await admit(request(far), resolver=resolver)
    applied(far, response)
    assert any("in the future" in w for w in response["warnings"])
    assert registry.lookups == 2  # served from the entry fetched a moment ago, not looked up again
    for _ in range(5):  # every admission with the forged token, a second apart: still cached
        clock.advance(1)
        applied(far, await admit(request(far), resolver=resolver))
    assert registry.lookups == 2
    clock.advance(REFRESH_SKEW_MS / 1000)  # past the skew: one fresh lookup, then cached again
    for _ in range(3):
        applied(far, await admit(request(far), resolver=resolver))
    assert registry.lookups == 3
