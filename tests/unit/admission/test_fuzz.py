"""Seeded fuzzing of /mutate: hostile reviews, objects and modelpin annotations.

Drives the real ASGI app in-process with the fake registry. For every answer:
HTTP 200, 400 or 413; a 400 is JSON naming the field whose type was changed;
a 200 echoes the request's uid; a patch applies with jsonpatch; an allowed
CREATE/UPDATE leaves no template anywhere under spec; a denial carries a 4xx
code (the fake registry never fails, so every cause lies in the request).
Bounded by a request count and a time budget.
"""

from __future__ import annotations

import base64
import copy
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jsonpatch
import orjson
import pytest

from tests.support.fakes import FakeRegistry, webhook_client
from tests.support.reviews import RECONCILER, fixture, request
from webhook.templating import record_annotations as records
from webhook.templating.grammar import MAX_NAME_CHARS, is_candidate

SEED = int(os.environ.get("MODELPIN_FUZZ_SEED", "12"))
REQUESTS = int(os.environ.get("MODELPIN_FUZZ_REQUESTS", "4000"))
BUDGET_SECONDS = 40.0
LIMIT = 256 * 1024
FIXTURES = ("seldon-seed.yaml", "isvc-canary.yaml", "isvc-legacy.yaml", "seldon-model.yaml", "trainedmodel.yaml")
SPACES = " \t\n\v\f\r\x1c\x85\u00a0\u1680\u2000\u2028\u2029\u202f\u205f\u3000"
DEEP = "__DEEP__"


def templates(rng: random.Random) -> str:
    name = rng.choice(["iris demo1", "fraud", "nope", "x" * (MAX_NAME_CHARS + 1), "a:b", "", " iris demo1"])
    selector = rng.choice(["@champion", "/1", "/2", "/latest", "/Production", "", "/" + "9" * 4400, "/0", "@", "/x"])
    lead = "".join(rng.choice(SPACES) for _ in range(rng.choice([0, 0, 1, 3])))
    forms = [
        f"{lead}models:/{name}{selector}",
        f'{lead}{{{{ mlflow.blob["{name}{selector}"] }}}}',
        f"{lead}{{{{ mlflow.s3['{name}{selector}'] }}}}",
        f'{lead}{{{{ nope.auto["{name}{selector}"] }}}}',
        lead + "{{",
        lead + "models:/",
        f"{lead}models:/{'n' * rng.choice([10, 5000, 70000])}@champion",
        f'{lead}{{{{ mlflow.blob["iris demo1@champion"] }}}}{lead}',
    ]
    return rng.choice(forms)


def junk(rng: random.Random) -> Any:
    return rng.choice([None, False, True, [], {}, 0, -1, 1.5, "x", ["models:/fraud/2"], {"a": "{{"}, "9" * 5000])


def string_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    stack = [(node, path)]
    while stack:
        current, here = stack.pop()
        if isinstance(current, dict):
            stack += [(v, (*here, k)) for k, v in current.items()]
        elif isinstance(current, list):
            stack += [(v, (*here, i)) for i, v in enumerate(current)]
        elif isinstance(current, str):
            found.append(here)
    return found


def set_at(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for token in path[:-1]:
        node = node[token]
    node[path[-1]] = value


def candidates(node: Any) -> list[str]:
    out = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            stack += current.values()
        elif isinstance(current, list):
            stack += current
        elif isinstance(current, str) and is_candidate(current):
            out.append(current[:80])
    return out


# --- mutations of the object ---------------------------------------------------------


def m_template(rng: random.Random, obj: dict[str, Any], review: dict[str, Any]) -> None:
    paths = [p for p in string_paths(obj.get("spec")) if p]
    if paths:
        set_at(obj["spec"], rng.choice(paths), templates(rng))


def m_new_field(rng: random.Random, obj: dict[str, Any], review: dict[str, Any]) -> None:
    if isinstance(obj.get("spec"), dict):
        obj["spec"][rng.choice(["extra", "predictor", "args", "a/b~c"])] = rng.choice(
            [templates(rng), [templates(rng)], {"env": [{"value": templates(rng)}]}]
        )


def m_metadata(rng: random.Random, obj: dict[str, Any], review: dict[str, Any]) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        obj["metadata"] = junk(rng)
    elif choice == 1 and isinstance(obj.get("metadata"), dict):
        obj["metadata"][rng.choice(["annotations", "labels", "namespace"])] = junk(rng)
    elif choice == 2:
        obj.pop("metadata", None)
    elif isinstance(obj.get("metadata"), dict):
        obj["metadata"]["annotations"] = {rng.choice(["a", records.PAUSED]): junk(rng)}


def m_records(rng: random.Random, obj: dict[str, Any], review: dict[str, Any]) -> None:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return
    ann = meta.get("annotations")
    if not isinstance(ann, dict):
        ann = meta["annotations"] = {}
    paths = [p for p in string_paths(obj.get("spec")) if p]
    pointer = "/spec/" + "/".join(str(t) for t in rng.choice(paths)) if paths else "/spec/x"
    choice = rng.randrange(6)
    if choice == 0:
        ann[records.RESOLVED] = records.dumps({pointer: {"uri": templates(rng), "version": "1"}})
        ann[records.TEMPLATES] = records.dumps({pointer: "models:/fraud/2"})
    elif choice == 1:
        ann[records.REFRESH] = rng.choice(
            [str(10**17), "9" * 5000, "-5", "1_000", " 12", "x", str(int(time.time() * 1000))]
        )
    elif choice == 2:
        ann[rng.choice([records.TEMPLATES, records.RESOLVED])] = rng.choice(["{", "[]", "null", '{"a": 1}', "9" * 5000])
    elif choice == 3:
        ann[records.TEMPLATES] = records.dumps({pointer: templates(rng)})
        ann[records.RESOLVED] = records.dumps(
            {pointer: {"uri": "s3://recorded", "version": rng.choice(["1", 7, None])}}
        )
    elif choice == 4:
        ann[records.PAUSED] = rng.choice(["true", "false", "yes"])
    else:
        ann[records.RESOLVED] = records.dumps({pointer: {"uri": junk(rng)}})


def m_spec(rng: random.Random, obj: dict[str, Any], review: dict[str, Any]) -> None:
    obj["spec"] = rng.choice([templates(rng), [templates(rng)], junk(rng), DEEP])


MUTATIONS: list[Callable[[random.Random, dict[str, Any], dict[str, Any]], None]] = [
    m_template,
    m_template,
    m_new_field,
    m_metadata,
    m_records,
    m_records,
    m_spec,
]


def m_review(rng: random.Random, review: dict[str, Any]) -> None:
    req = review["request"]
    choice = rng.randrange(8)
    if choice == 0:
        req["uid"] = junk(rng)
    elif choice == 1:
        req["operation"] = rng.choice(["UPDATE", "DELETE", "CONNECT", "PATCH", None])
        if req["operation"] == "UPDATE":
            req["oldObject"] = copy.deepcopy(req.get("object"))
    elif choice == 2:
        req["namespace"] = junk(rng)
    elif choice == 3:
        req["kind"] = rng.choice(
            [junk(rng), {"group": "example.com", "version": "v1", "kind": "Custom"}, {"kind": "InferenceService"}]
        )
    elif choice == 4:
        req["object"] = junk(rng)
    elif choice == 5:
        req["oldObject"] = junk(rng)
    elif choice == 6:
        review["apiVersion"] = junk(rng)
    else:
        req.pop(rng.choice(["uid", "kind", "operation", "object"]))


# Every field of an admission.k8s.io/v1 AdmissionRequest, with the fields inside those that are objects.
REQUEST_FIELDS: dict[str, tuple[str, ...]] = {
    "uid": (),
    "kind": ("group", "version", "kind"),
    "resource": ("group", "version", "resource"),
    "subResource": (),
    "requestKind": ("group", "version", "kind"),
    "requestResource": ("group", "version", "resource"),
    "requestSubResource": (),
    "name": (),
    "namespace": (),
    "operation": (),
    "userInfo": ("username", "uid", "groups", "extra"),
    "object": (),
    "oldObject": (),
    "dryRun": (),
    "options": (),
}


def any_json(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of a random type."""
    kind = rng.randrange(8 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 7])
    if kind == 3:
        return rng.choice([1.5, -0.0, 1e300])
    if kind == 4:
        return rng.choice(["", "x", "CREATE", "UPDATE", "9" * 300])
    if kind == 5:
        return rng.choice([[], {}])
    if kind == 6:
        return [any_json(rng, depth + 1) for _ in range(rng.randrange(1, 3))]
    return {rng.choice(["a", "kind", "username"]): any_json(rng, depth + 1) for _ in range(rng.randrange(1, 3))}


def m_field_type(rng: random.Random, review: dict[str, Any]) -> str:
    """Give one request field (or a field inside one) a value of a random JSON type; the field's name."""
    req = review["request"]
    name = rng.choice(list(REQUEST_FIELDS))
    inner = REQUEST_FIELDS[name]
    if inner and rng.random() < 0.5:
        if not isinstance(req.get(name), dict):
            req[name] = {}
        child = rng.choice(inner)
        req[name][child] = any_json(rng)
        return f"request.{name}.{child}"
    req[name] = any_json(rng)
    return f"request.{name}"


def deep_spec(depth: int) -> str:
    return '{"a":' * depth + '"models:/iris demo1@champion"' + "}" * depth


def body_of(rng: random.Random, review: dict[str, Any]) -> bytes:
    body = orjson.dumps(review)
    if DEEP.encode() in body:
        body = body.replace(orjson.dumps(DEEP), deep_spec(rng.choice([300, 990])).encode())
    if rng.random() < 0.03:
        body = body[: rng.randrange(len(body))]
    return body


@pytest.fixture
async def client(registry: FakeRegistry) -> AsyncIterator[httpx.AsyncClient]:
    async with webhook_client(registry, LIMIT) as c:
        yield c


async def test_fuzzed_reviews_get_clear_answers(client: httpx.AsyncClient) -> None:
    rng = random.Random(SEED)
    bases = [fixture(name) for name in FIXTURES]
    # each fixture as admitted once, so modelpin's own records are there to be mangled
    admitted = []
    for obj in bases:
        answer = (
            await client.post(
                "/mutate",
                content=orjson.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request(obj)}
                ),
                headers={"Content-Type": "application/json"},
            )
        ).json()
        patch = answer["response"].get("patch")
        ops = orjson.loads(base64.b64decode(patch)) if patch else []
        admitted.append(jsonpatch.apply_patch(obj, ops))
    started = time.monotonic()
    counts: dict[str, int] = {}
    sent = 0
    while sent < REQUESTS and time.monotonic() - started < BUDGET_SECONDS:
        obj = copy.deepcopy(rng.choice(bases + admitted))
        operation = rng.choice(["CREATE", "UPDATE"])
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request(
                obj,
                operation,
                old=copy.deepcopy(obj) if operation == "UPDATE" else None,
                username=rng.choice([None, "alice", RECONCILER]),
            ),
        }
        for _ in range(rng.choice([1, 1, 2, 3])):
            rng.choice(MUTATIONS)(rng, obj, review)
        retyped = None
        if rng.random() < 0.2:
            retyped = m_field_type(rng, review)
        elif rng.random() < 0.1:
            m_review(rng, review)
        body = body_of(rng, review)
        r = await client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
        sent += 1
        case = f"seed {SEED} request {sent}: {body[:300]!r}"
        assert r.status_code in (200, 400, 413), (case, r.status_code, r.text[:500])
        if r.status_code != 200:
            counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1
            if r.status_code == 400 and retyped is not None and body == orjson.dumps(review):
                # a whole body whose only fault can be the field given another type
                assert retyped.split(".")[1] in r.json()["error"], (case, retyped, r.text)
                counts["400 naming the field"] = counts.get("400 naming the field", 0) + 1
            continue
        answer = r.json()["response"]
        sent_review = orjson.loads(body)
        req = sent_review["request"]
        assert answer["uid"] == req["uid"], case
        if not answer["allowed"]:
            code = answer["status"]["code"]
            assert 400 <= code < 500, (case, answer["status"])
            counts[f"denied {code}"] = counts.get(f"denied {code}", 0) + 1
            continue
        patch = answer.get("patch")
        ops = orjson.loads(base64.b64decode(patch)) if patch else []
        result = jsonpatch.apply_patch(req.get("object"), ops, in_place=True) if ops else req.get("object")
        if req["operation"] in ("CREATE", "UPDATE"):
            spec = result.get("spec")
            left = [spec] if isinstance(spec, str) and is_candidate(spec) else candidates(spec)
            assert not left, (case, left, ops)
        counts["patched" if ops else "allowed"] = counts.get("patched" if ops else "allowed", 0) + 1
    print(f"fuzz: seed {SEED}, {sent} requests in {time.monotonic() - started:.1f}s: {sorted(counts.items())}")
    assert sent >= 500, "too few requests in the time budget to mean anything"
    assert counts.get("patched", 0) and any(k.startswith("denied") for k in counts) and counts.get("400")
    assert counts.get("400 naming the field", 0) >= 50, counts
