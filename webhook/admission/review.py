"""AdmissionReview shapes, their validation, and the response builders (admission.k8s.io/v1).

Two error families, as kopf has them: a body that is not an AdmissionReview
is a ``BadRequest`` (HTTP 400 at the edge); an object modelpin cannot admit
is a denial inside a well-formed 200 response, its status taken from
``STATUS``. Builders return responses without a uid: the edge stamps the
request's uid on the way out, as controller-runtime's ``Complete`` does.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Literal, NotRequired, TypedDict, cast

import orjson

from webhook.templating.causes import Cause

API_VERSION = "admission.k8s.io/v1"

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
_OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))


class BadRequest(ValueError):
    pass


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class AdmissionRequest(TypedDict):
    """The fields of ``request`` modelpin reads, as ``parse_review`` guarantees them."""

    uid: str
    kind: GroupVersionKind
    operation: Operation
    namespace: NotRequired[str]
    name: NotRequired[str]
    # a JSON object for CREATE and UPDATE; absent or null otherwise
    object: NotRequired[dict[str, Any]]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]


class Status(TypedDict):
    code: int
    message: str
    reason: str


class Response(TypedDict, total=False):
    allowed: bool
    status: Status
    patchType: str
    patch: str
    warnings: list[str]


Op = dict[str, Any]

# A denial's cause -> (HTTP status code, Kubernetes StatusReason): the one place they are mapped.
STATUS: dict[Cause, tuple[int, str]] = {
    Cause.INVALID: (422, "Invalid"),
    Cause.NOT_FOUND: (404, "NotFound"),
    Cause.POLICY: (403, "Forbidden"),
    Cause.UNAVAILABLE: (503, "ServiceUnavailable"),
    Cause.INTERNAL: (500, "InternalError"),
}


def parse_review(body: bytes) -> AdmissionRequest:
    """The validated ``request`` of a v1 AdmissionReview, or ``BadRequest`` saying why not."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(review, dict):
        raise BadRequest("body is not a JSON object")
    if review.get("kind") != "AdmissionReview":
        raise BadRequest(f"kind is {review.get('kind')!r}, expected 'AdmissionReview'")
    if review.get("apiVersion") != API_VERSION:
        raise BadRequest(f"apiVersion is {review.get('apiVersion')!r}, expected {API_VERSION!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadRequest("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadRequest("request.uid is missing")
    operation = request.get("operation")
    if operation not in _OPERATIONS:
        raise BadRequest(f"request.operation is {operation!r}")
    if operation in ("CREATE", "UPDATE") and not isinstance(request.get("object"), dict):
        raise BadRequest(f"request.object is missing for {operation}")
    kind = request.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise BadRequest("request.kind is missing")
    for name in ("group", "version"):
        if not isinstance(kind.setdefault(name, ""), str):
            raise BadRequest(f"request.kind.{name} is not a string")
    namespace = request.get("namespace")
    if namespace is None:
        request.pop("namespace", None)
    elif not isinstance(namespace, str):
        raise BadRequest("request.namespace is not a string")
    return cast(AdmissionRequest, request)


def encode_patch(ops: Sequence[Op]) -> str:
    return base64.b64encode(orjson.dumps(list(ops))).decode()


def allowed(warnings: Sequence[str] = ()) -> Response:
    """Allowed, with nothing to change."""
    response: Response = {"allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return response


def patched(ops: Sequence[Op], warnings: Sequence[str] = ()) -> Response:
    """Allowed with ``ops`` applied; with no ops, the same as ``allowed``."""
    response = allowed(warnings)
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(ops)
    return response


def denied(cause: Cause, message: str, warnings: Sequence[str] = ()) -> Response:
    code, reason = STATUS[cause]
    response: Response = {"allowed": False, "status": {"code": code, "message": message, "reason": reason}}
    if warnings:
        response["warnings"] = list(warnings)
    return response


def review(uid: str, response: Response) -> bytes:
    """The AdmissionReview answering the request ``uid``."""
    return orjson.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": {"uid": uid, **response}})
