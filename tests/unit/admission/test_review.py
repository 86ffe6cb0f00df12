from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from webhook.admission.review import API_VERSION, STATUS, BadRequest, allowed, denied, parse_review, patched, review
from webhook.templating.causes import Cause


def body(**request: Any) -> bytes:
    base: dict[str, Any] = {
        "uid": "u-1",
        "kind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
        "operation": "CREATE",
        "object": {"spec": {}},
    }
    base.update(request)
    base = {k: v for k, v in base.items() if v is not ...}
    return orjson.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": base})


def test_parse_valid_review() -> None:
    request = parse_review(body())
    assert request["uid"] == "u-1"
    assert request["operation"] == "CREATE"


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_need_no_object(operation: str) -> None:
    assert parse_review(body(operation=operation, object=...))["operation"] == operation


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{nope", "body is not JSON: "),
        (b"[1]", "body is not a JSON object"),
        (orjson.dumps({"kind": "Pod", "apiVersion": API_VERSION}), "kind is 'Pod', expected 'AdmissionReview'"),
        (
            orjson.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}),
            "apiVersion is 'admission.k8s.io/v1beta1', expected 'admission.k8s.io/v1'",
        ),
        (orjson.dumps({"kind": "AdmissionReview", "apiVersion": API_VERSION}), "AdmissionReview has no request object"),
        (
            orjson.dumps({"kind": "AdmissionReview", "apiVersion": API_VERSION, "request": []}),
            "AdmissionReview has no request object",
        ),
        (body(uid=...), "request.uid is missing"),
        (body(uid=""), "request.uid is missing"),
        (body(uid=7), "request.uid is missing"),
        (body(operation="PATCH"), "request.operation is 'PATCH'"),
        (body(object=...), "request.object is missing for CREATE"),
        (body(operation="UPDATE", object=None), "request.object is missing for UPDATE"),
        (body(kind=...), "request.kind is missing"),
        (body(kind={"group": "x"}), "request.kind is missing"),
    ],
)
def test_bad_requests(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_review(raw)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


def test_allowed_without_patch() -> None:
    assert allowed() == {"allowed": True}
    assert patched([]) == {"allowed": True}


def test_patched_with_warnings() -> None:
    ops = [{"op": "replace", "path": "/spec/a", "value": "s3://x"}]
    response = patched(ops, ["careful"])
    assert response["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(response["patch"])) == ops
    assert response["warnings"] == ["careful"]
    assert response["allowed"] is True


@pytest.mark.parametrize(
    ("cause", "code", "reason"),
    [
        (Cause.INVALID, 422, "Invalid"),
        (Cause.NOT_FOUND, 404, "NotFound"),
        (Cause.POLICY, 403, "Forbidden"),
        (Cause.UNAVAILABLE, 503, "ServiceUnavailable"),
        (Cause.INTERNAL, 500, "InternalError"),
    ],
)
def test_denied_shape(cause: Cause, code: int, reason: str) -> None:
    response = denied(cause, "no")
    assert response == {"allowed": False, "status": {"code": code, "message": "no", "reason": reason}}


def test_every_cause_has_a_status() -> None:
    assert set(STATUS) == set(Cause)


def test_denied_keeps_warnings() -> None:
    assert denied(Cause.NOT_FOUND, "no", ["w"])["warnings"] == ["w"]


def test_review_envelope_stamps_the_uid() -> None:
    assert orjson.loads(review("u", allowed())) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True},
    }


def test_kind_group_defaults_to_core_and_namespace_must_be_a_string() -> None:
    assert parse_review(body(kind={"kind": "Pod", "version": "v1"}))["kind"]["group"] == ""
    with pytest.raises(BadRequest, match=r"request\.namespace is not a string"):
        parse_review(body(namespace=["a"]))
    assert "namespace" not in parse_review(body(namespace=None))
