"""AdmissionReview shapes and response builders (admission.k8s.io/v1).

Two error families, mapped in one place: a body that is not an AdmissionReview
is a ``BadRequest`` (HTTP 400 at the transport); an object modelpin cannot
admit is a denial inside a well-formed 200 response.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, TypedDict

import orjson

API_VERSION = "admission.k8s.io/v1"


class BadRequest(ValueError):
    pass


class Status(TypedDict, total=False):
    code: int
    message: str
    reason: str


class Response(TypedDict, total=False):
    uid: str
    allowed: bool
    status: Status
    patchType: str
    patch: str
    warnings: list[str]


Op = dict[str, Any]


def parse_review(body: bytes) -> dict[str, Any]:
    """The ``request`` of a v1 AdmissionReview, or ``BadRequest`` saying why not."""
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
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise BadRequest(f"request.operation is {operation!r}")
    if operation in ("CREATE", "UPDATE") and not isinstance(request.get("object"), dict):
        raise BadRequest(f"request.object is missing for {operation}")
    kind = request.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise BadRequest("request.kind is missing")
    return request


def encode_patch(ops: Sequence[Op]) -> str:
    return base64.b64encode(orjson.dumps(list(ops))).decode()


def allowed(uid: str, patch: str | None = None, warnings: Sequence[str] = ()) -> Response:
    """Allowed, with the ``encode_patch``-ed ops if anything changes."""
    response: Response = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = patch
    if warnings:
        response["warnings"] = list(warnings)
    return response


def denied(uid: str, code: int, message: str, warnings: Sequence[str] = ()) -> Response:
    response: Response = {
        "uid": uid,
        "allowed": False,
        "status": {"code": code, "message": message, "reason": _REASONS.get(code, "BadRequest")},
    }
    if warnings:
        response["warnings"] = list(warnings)
    return response


_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    422: "Invalid",
    503: "ServiceUnavailable",
}


def review(response: Response) -> bytes:
    return orjson.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response})


def allowed_around_uid(patch: str | None) -> tuple[bytes, bytes]:
    """``review(allowed(uid, patch))`` split where the uid goes, for an answer sent many times.

    Joining the halves around a uid is only valid JSON for a uid that needs
    no escaping (``memo.review_key`` admits only such uids).
    """
    head, mark, tail = review(allowed("", patch)).partition(b'"uid":""')
    if not mark:
        raise AssertionError("orjson rendered the uid differently")
    return head + b'"uid":"', b'"' + tail
