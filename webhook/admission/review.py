"""AdmissionReview shapes, their validation, and the response builders (admission.k8s.io/v1).

Two error families, as kopf has them: a body that is not an AdmissionReview
is a ``BadRequest`` (HTTP 400 at the edge); an object modelpin cannot admit
is a denial inside a well-formed 200 response, its status taken from
``STATUS``. Builders return responses without a uid: the edge stamps the
request's uid on the way out, as controller-runtime's ``Complete`` does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, Literal, NotRequired, TypedDict, cast

import orjson

from webhook.templating.causes import Cause
from webhook.templating.json_objects import NotAnObject, load_object

API_VERSION = "admission.k8s.io/v1"

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
_OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))


class BadRequest(ValueError):
    pass


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict):
    """The fields of ``request`` modelpin reads, as ``parse_review`` guarantees them."""

    uid: str
    kind: GroupVersionKind
    operation: Operation
    namespace: NotRequired[str]
    name: NotRequired[str]
    userInfo: NotRequired[UserInfo]
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
    """The validated ``request`` of a v1 AdmissionReview, or ``BadRequest`` naming the field that is wrong.

    Every field the apiserver sends is checked for its type, read or not, so that no
    value of an unexpected type can reach code that assumes one. Optional fields sent
    as null are dropped, as the apiserver omits them.
    """
    try:
        review = load_object(body)
    except NotAnObject as exc:
        raise BadRequest(f"body is {exc}") from exc
    if review.get("kind") != "AdmissionReview":
        raise BadRequest(f"kind is {_shown(review.get('kind'))}, expected 'AdmissionReview'")
    if review.get("apiVersion") != API_VERSION:
        raise BadRequest(f"apiVersion is {_shown(review.get('apiVersion'))}, expected {API_VERSION!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadRequest("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadRequest(_wrong("request.uid", uid, "a non-empty string"))
    operation = request.get("operation")
    if not isinstance(operation, str) or operation not in _OPERATIONS:
        raise BadRequest(_wrong("request.operation", operation, "one of CREATE, UPDATE, DELETE, CONNECT"))
    kind = request.get("kind")
    if not isinstance(kind, dict):
        raise BadRequest(_wrong("request.kind", kind, "an object"))
    if not isinstance(kind.get("kind"), str):
        raise BadRequest(_wrong("request.kind.kind", kind.get("kind"), "a string"))
    for name in ("group", "version"):
        if not isinstance(kind.setdefault(name, ""), str):
            raise BadRequest(f"request.kind.{name} is {_shown(kind[name])}, expected a string")
    for name, check in _OPTIONAL.items():
        if name not in request:
            continue
        value = request[name]
        if value is None:
            if name not in ("object", "oldObject"):
                del request[name]
            continue
        problem = check(value)
        if problem is not None:
            raise BadRequest(f"request.{name}{problem}")
    if operation in ("CREATE", "UPDATE") and not isinstance(request.get("object"), dict):
        raise BadRequest(f"request.object is missing for {operation}")
    return cast(AdmissionRequest, request)


def _wrong(field: str, value: object, expected: str) -> str:
    if value is None:
        return f"{field} is missing, expected {expected}"
    return f"{field} is {_shown(value)}, expected {expected}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _a(kind: str, test: Callable[[object], bool]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if test(value) else f" is {_shown(value)}, expected {kind}"

    return check


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _object_of(fields: dict[str, Callable[[object], str | None]]) -> Callable[[object], str | None]:
    """A check for a JSON object whose named fields (each optional) pass their own checks."""

    def check(value: object) -> str | None:
        if not isinstance(value, dict):
            return f" is {_shown(value)}, expected an object"
        for name, inner in fields.items():
            if value.get(name) is not None:
                problem = inner(value[name])
                if problem is not None:
                    return f".{name}{problem}"
        return None

    return check


_STRING = _a("a string", _is_str)
_GVK = _object_of({"group": _STRING, "version": _STRING, "kind": _STRING})
_GVR = _object_of({"group": _STRING, "version": _STRING, "resource": _STRING})
_EXTRA = _a(
    "an object of string lists",
    lambda v: isinstance(v, dict) and all(_strings(item) for item in v.values()),
)

# Optional request fields (admission.k8s.io/v1 AdmissionRequest) and their checks.
_OPTIONAL: dict[str, Callable[[object], str | None]] = {
    "name": _STRING,
    "namespace": _STRING,
    "resource": _GVR,
    "subResource": _STRING,
    "requestKind": _GVK,
    "requestResource": _GVR,
    "requestSubResource": _STRING,
    "userInfo": _object_of(
        {"username": _STRING, "uid": _STRING, "groups": _a("a list of strings", _strings), "extra": _EXTRA}
    ),
    "object": _a("an object", lambda v: isinstance(v, dict)),
    "oldObject": _a("an object", lambda v: isinstance(v, dict)),
    "dryRun": _a("a boolean", lambda v: isinstance(v, bool)),
    "options": _a("an object", lambda v: isinstance(v, dict)),
}


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


def outcome(operation: str, response: Response) -> str:
    """The response as the admission metric labels it: skipped, denied, patched or unchanged."""
    if operation not in ("CREATE", "UPDATE"):
        return "skipped"
    if not response["allowed"]:
        return "denied"
    return "patched" if "patch" in response else "unchanged"


def review(uid: str, response: Response) -> bytes:
    """The AdmissionReview answering the request ``uid``."""
    return orjson.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": {"uid": uid, **response}})
