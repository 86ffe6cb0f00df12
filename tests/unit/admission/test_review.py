from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from webhook.admission.review import (
    API_VERSION,
    STATUS,
    BadRequest,
    allowed,
    denied,
    outcome,
    parse_review,
    patched,
    review,
)
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
        (body(uid=""), "request.uid is '', expected a non-empty string"),
        (body(uid=7), "request.uid is 7, expected a non-empty string"),
        (body(operation="PATCH"), "request.operation is 'PATCH'"),
        (body(operation=["CREATE"]), "request.operation is ['CREATE'], expected one of CREATE, UPDATE"),
        (body(operation={"a": 1}), "request.operation is {'a': 1}, expected one of"),
        (body(object=...), "request.object is missing for CREATE"),
        (body(operation="UPDATE", object=None), "request.object is missing for UPDATE"),
        (body(kind=...), "request.kind is missing"),
        (body(kind={"group": "x"}), "request.kind.kind is missing, expected a string"),
        (body(kind=[]), "request.kind is [], expected an object"),
        (body(kind={"kind": "Pod", "version": 1}), "request.kind.version is 1, expected a string"),
        (body(name=5), "request.name is 5, expected a string"),
        (body(resource="pods"), "request.resource is 'pods', expected an object"),
        (body(resource={"resource": 1}), "request.resource.resource is 1, expected a string"),
        (body(subResource=[]), "request.subResource is [], expected a string"),
        (body(requestKind={"kind": []}), "request.requestKind.kind is [], expected a string"),
        (body(requestResource=1.5), "request.requestResource is 1.5, expected an object"),
        (body(requestSubResource={}), "request.requestSubResource is {}, expected a string"),
        (body(userInfo="admin"), "request.userInfo is 'admin', expected an object"),
        (body(userInfo={"username": ["a"]}), "request.userInfo.username is ['a'], expected a string"),
        (body(userInfo={"groups": "a"}), "request.userInfo.groups is 'a', expected a list of strings"),
        (body(userInfo={"groups": [1]}), "request.userInfo.groups is [1], expected a list of strings"),
        (body(userInfo={"extra": {"a": "b"}}), "request.userInfo.extra is {'a': 'b'}, expected an object of"),
        (body(userInfo={"uid": 3}), "request.userInfo.uid is 3, expected a string"),
        (body(object=[]), "request.object is [], expected an object"),
        (body(oldObject="x"), "request.oldObject is 'x', expected an object"),
        (body(dryRun="true"), "request.dryRun is 'true', expected a boolean"),
        (body(options=[]), "request.options is [], expected an object"),
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
    with pytest.raises(BadRequest, match=r"request\.namespace is \['a'\], expected a string"):
        parse_review(body(namespace=["a"]))
    assert "namespace" not in parse_review(body(namespace=None))


def test_optional_fields_sent_as_null_are_dropped() -> None:
    request = parse_review(body(name=None, userInfo=None, dryRun=None, options=None, oldObject=None))
    assert "name" not in request and "userInfo" not in request and "dryRun" not in request
    assert request.get("oldObject", "absent") is None  # null is what the apiserver sends on CREATE


def test_a_full_apiserver_request_parses() -> None:
    request = parse_review(
        body(
            operation="UPDATE",
            name="m",
            namespace="team",
            resource={"group": "serving.kserve.io", "version": "v1beta1", "resource": "inferenceservices"},
            requestKind={"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
            requestResource={"group": "serving.kserve.io", "version": "v1beta1", "resource": "inferenceservices"},
            userInfo={"username": "alice", "uid": "1", "groups": ["system:authenticated"], "extra": {"k": ["v"]}},
            oldObject={"spec": {}},
            dryRun=False,
            options={"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
        )
    )
    assert request["userInfo"]["username"] == "alice"
    assert request["operation"] == "UPDATE"


@pytest.mark.parametrize(
    ("operation", "response", "label"),
    [
        ("DELETE", {"allowed": True}, "skipped"),
        ("CONNECT", {"allowed": True}, "skipped"),
        ("CREATE", {"allowed": False, "status": {"code": 403, "message": "no", "reason": "Forbidden"}}, "denied"),
        ("UPDATE", {"allowed": True, "patchType": "JSONPatch", "patch": "W10="}, "patched"),
        ("UPDATE", {"allowed": True, "warnings": ["w"]}, "unchanged"),
    ],
)
def test_outcome_labels_a_response_as_the_admission_metric_does(operation: str, response: Any, label: str) -> None:
    assert outcome(operation, response) == label
