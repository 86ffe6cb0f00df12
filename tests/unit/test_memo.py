"""The decision memo: a repeat answers exactly as a full decision would, and never longer."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY as PROMETHEUS

from tests.unit.conftest import Clock, FakeRegistry, apply_response, make_settings, seed_uri
from tests.unit.test_admission import DEMO1, GRAPH, at, fixture, request
from webhook import memo, records
from webhook.admission import admit, replay
from webhook.memo import DecisionMemo
from webhook.profiles import Flavor
from webhook.registry import Unavailable
from webhook.resolver import Resolver
from webhook.reviews import Response, parse_review


def memo_count(result: str) -> float:
    return PROMETHEUS.get_sample_value("modelpin_decision_memo_total", {"result": result}) or 0.0


def without_uid(response: Response) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "uid"}


@pytest.fixture
def decisions() -> DecisionMemo:
    return DecisionMemo()


@pytest.mark.parametrize("name", ["seldon-seed.yaml", "isvc-canary.yaml", "isvc-legacy.yaml", "trainedmodel.yaml"])
async def test_a_repeat_gets_the_full_decisions_answer(
    name: str, resolver: Resolver, registry: FakeRegistry, decisions: DecisionMemo
) -> None:
    obj = fixture(name)
    for model in ("fraud", "iris demo1"):
        registry.set_alias(model, "challenger", 1 if model == "fraud" else 2)
    plain = await admit(request(obj), resolver=resolver)
    first = await admit(request(obj), resolver=resolver, decisions=decisions)
    hits = memo_count("hit")
    second = await admit(request(copy.deepcopy(obj)), resolver=resolver, decisions=decisions)
    assert memo_count("hit") == hits + (1 if plain["allowed"] and "warnings" not in plain else 0)
    assert without_uid(first) == without_uid(plain)
    assert without_uid(second) == without_uid(plain)
    # and the output, admitted again, still needs no patch
    out = apply_response(obj, plain) if plain["allowed"] else obj
    for _ in range(2):
        again = await admit(request(out, "UPDATE"), resolver=resolver, decisions=decisions)
        assert "patch" not in again or not plain["allowed"]


async def test_the_uid_is_the_requests_own(resolver: Resolver, decisions: DecisionMemo) -> None:
    obj = fixture("seldon-seed.yaml")
    await admit(request(obj), resolver=resolver, decisions=decisions)
    req = request(obj)
    assert (await admit(req, resolver=resolver, decisions=decisions))["uid"] == req["uid"]


async def test_a_moved_alias_is_seen_once_the_cache_entry_expires(
    resolver: Resolver, registry: FakeRegistry, clock: Clock, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    first = apply_response(obj, await admit(request(obj), resolver=resolver, decisions=decisions))
    assert at(first, DEMO1) == seed_uri("iris demo1", 1)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)  # past the floating TTL of the test settings
    later = apply_response(obj, await admit(request(obj), resolver=resolver, decisions=decisions))
    assert at(later, DEMO1) == seed_uri("iris demo1", 2)
    assert at(later, f"{GRAPH}/modelUri") == seed_uri("iris demo4", 1)


async def test_a_renewed_cache_entry_retires_the_decision(
    resolver: Resolver, registry: FakeRegistry, clock: Clock, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    await admit(request(obj), resolver=resolver, decisions=decisions)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(25)  # past REFRESH_AHEAD of the TTL: served, renewed in the background
    stale_enough = apply_response(obj, await admit(request(obj), resolver=resolver, decisions=decisions))
    assert at(stale_enough, DEMO1) == seed_uri("iris demo1", 1)
    for _ in range(3):  # let the background renewals land
        await asyncio.sleep(0)
    renewed = apply_response(obj, await admit(request(obj), resolver=resolver, decisions=decisions))
    assert at(renewed, DEMO1) == seed_uri("iris demo1", 2)


async def test_a_refresh_token_newer_than_the_cache_bypasses_the_memo(
    resolver: Resolver, registry: FakeRegistry, clock: Clock, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    out = apply_response(obj, await admit(request(obj), resolver=resolver, decisions=decisions))
    assert "patch" not in await admit(request(out, "UPDATE"), resolver=resolver, decisions=decisions)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(1)
    out["metadata"]["annotations"][records.REFRESH] = str(clock.ms)
    lookups = registry.lookups
    touched = apply_response(out, await admit(request(out, "UPDATE"), resolver=resolver, decisions=decisions))
    assert at(touched, DEMO1) == seed_uri("iris demo1", 2)
    assert registry.lookups == lookups + 4


async def test_degraded_answers_are_not_remembered(
    resolver: Resolver, registry: FakeRegistry, clock: Clock, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    await admit(request(obj), resolver=resolver, decisions=decisions)
    registry.fail_with(Unavailable("registry 'mlflow' answered 503: down"))
    clock.advance(31)
    for _ in range(2):
        response = await admit(request(obj), resolver=resolver, decisions=decisions)
        assert response["allowed"] is True
        assert response["warnings"], "a stale answer says so every time"
    registry.fail_with(None)
    clock.advance(1)
    assert "warnings" not in await admit(request(obj), resolver=resolver, decisions=decisions)


async def test_denials_are_not_remembered(resolver: Resolver, registry: FakeRegistry, decisions: DecisionMemo) -> None:
    obj = fixture("seldon-seed.yaml")
    at(obj, GRAPH)["modelUri"] = "models:/newcomer@champion"
    assert (await admit(request(obj), resolver=resolver, decisions=decisions))["allowed"] is False
    registry.add("newcomer", 1, "s3://bucket/newcomer/1", run_id="n1")
    registry.set_alias("newcomer", "champion", 1)
    assert (await admit(request(obj), resolver=resolver, decisions=decisions))["allowed"] is True
    assert len(decisions) == 2  # the allowed decision, by its spec and by its fields; nothing of the denial


async def test_paused_objects_are_answered_from_their_records(
    resolver: Resolver, registry: FakeRegistry, clock: Clock, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    out = apply_response(obj, await admit(request(obj), resolver=resolver, decisions=decisions))
    out["metadata"]["annotations"][records.PAUSED] = "true"
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(3600)
    for _ in range(2):
        response = await admit(request(out, "UPDATE"), resolver=resolver, decisions=decisions)
        assert "patch" not in response
    assert registry.lookups == 4  # only the first CREATE asked


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["metadata"]["labels"].pop(records.MANAGED),
        lambda o: o["metadata"].pop("labels"),
        lambda o: o["metadata"]["annotations"].pop(records.RESOLVED),
        lambda o: o["metadata"]["annotations"].update({records.TEMPLATES: "{}"}),
        lambda o: o["metadata"].pop("annotations"),
    ],
    ids=["label", "labels", "resolved", "templates", "annotations"],
)
async def test_the_records_on_the_object_are_part_of_the_key(
    change: Any, resolver: Resolver, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    out = apply_response(obj, await admit(request(obj), resolver=resolver, decisions=decisions))
    assert "patch" not in await admit(request(out, "UPDATE"), resolver=resolver, decisions=decisions)
    damaged = copy.deepcopy(out)
    change(damaged)
    plain = await admit(request(damaged, "UPDATE"), resolver=resolver)
    assert "patch" in plain  # so a key blind to metadata would have answered wrongly
    remembered = await admit(request(damaged, "UPDATE"), resolver=resolver, decisions=decisions)
    assert without_uid(remembered) == without_uid(plain)


def test_the_key_covers_namespace_and_flavor() -> None:
    obj = fixture("isvc-canary.yaml")
    keys = {memo.key(obj, ns, flavor) for ns in ("a", "b", None) for flavor in Flavor}
    assert len(keys) == 3 * len(Flavor)


def test_large_or_unserialisable_objects_are_not_memoised() -> None:
    big = {"spec": {"blob": "x" * memo.MAX_KEY_BYTES}}
    assert memo.key(big, "ns", Flavor.KSERVE) is None
    assert memo.key({"spec": {"n": 2**70}}, "ns", Flavor.KSERVE) is None
    assert memo.key({"spec": {"n": 1}}, "ns", Flavor.KSERVE) is not None


async def test_the_memo_is_bounded(resolver: Resolver) -> None:
    decisions = DecisionMemo(max_entries=3)
    for i in range(5):
        await admit(request(fixture("seldon-seed.yaml"), namespace=f"ns-{i}"), resolver=resolver, decisions=decisions)
    assert len(decisions) == 3


def test_the_memo_evicts_the_oldest_entry_first(resolver: Resolver) -> None:
    decisions = DecisionMemo(max_entries=3)
    decision = memo.Decision(None, (), 0, float("inf"), 0, 0, False, (b"", b""))
    for k in (b"a", b"b", b"c", b"b"):
        decisions.put(k, decision)
    assert decisions.get(b"a", resolver) is decision  # a hit does not make an entry younger
    decisions.put(b"d", decision)
    assert [k for k in (b"a", b"b", b"c", b"d") if decisions.get(k, resolver)] == [b"b", b"c", b"d"]


async def test_a_cold_replica_with_the_same_memo_class_starts_empty(registry: FakeRegistry, clock: Clock) -> None:
    # a memo belongs to one resolver: entries of another resolver's cache never match by identity
    a = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)
    b = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)
    decisions = DecisionMemo()
    obj = fixture("seldon-seed.yaml")
    await admit(request(obj), resolver=a, decisions=decisions)
    lookups = registry.lookups
    await admit(request(obj), resolver=b, decisions=decisions)
    assert registry.lookups == lookups + 4


async def test_an_object_changed_outside_its_templates_shares_the_decision(
    resolver: Resolver, registry: FakeRegistry, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    await admit(request(obj), resolver=resolver, decisions=decisions)
    lookups = registry.lookups
    for i in range(3):
        changed = copy.deepcopy(obj)
        changed["spec"]["name"] = f"renamed-{i}"
        changed["spec"]["predictors"][0]["replicas"] = 5 + i
        plain = await admit(request(changed), resolver=resolver)
        fields = memo_count("fields")
        remembered = await admit(request(changed), resolver=resolver, decisions=decisions)
        assert memo_count("fields") == fields + 1
        assert without_uid(remembered) == without_uid(plain)
    assert registry.lookups == lookups


@pytest.mark.parametrize(
    "change",
    [
        lambda o: at(o, GRAPH).update({"modelUri": "models:/iris demo1@challenger"}),
        lambda o: at(o, GRAPH)["children"][1].update({"modelUri": "s3://pinned/by/hand"}),
        lambda o: o["spec"]["predictors"][0]["graph"]["children"].pop(),
    ],
    ids=["template", "literal", "field-gone"],
)
async def test_a_changed_template_field_is_decided_afresh(
    change: Any, resolver: Resolver, registry: FakeRegistry, decisions: DecisionMemo
) -> None:
    registry.set_alias("iris demo1", "challenger", 2)
    obj = fixture("seldon-seed.yaml")
    await admit(request(obj), resolver=resolver, decisions=decisions)
    changed = copy.deepcopy(obj)
    change(changed)
    plain = await admit(request(changed), resolver=resolver)
    hits, fields = memo_count("hit"), memo_count("fields")
    remembered = await admit(request(changed), resolver=resolver, decisions=decisions)
    assert (memo_count("hit"), memo_count("fields")) == (hits, fields)
    assert without_uid(remembered) == without_uid(plain)
    assert without_uid(remembered) != without_uid(await admit(request(obj), resolver=resolver))


def review_bytes(req: dict[str, Any]) -> bytes:
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})


def test_the_review_key_is_the_body_but_its_first_uid() -> None:
    obj = fixture("seldon-seed.yaml")
    a, b = request(obj), request(obj)
    ka, kb = memo.review_key(review_bytes(a)), memo.review_key(review_bytes(b))
    assert ka is not None and kb is not None
    assert (ka.uid, kb.uid) == (a["uid"], b["uid"])
    assert ka.key == kb.key
    assert a["uid"].encode() not in ka.key
    b["dryRun"] = True
    changed = memo.review_key(review_bytes(b))
    assert changed is not None and changed.key != ka.key


@pytest.mark.parametrize("uid", ['a\\"b', "a b", "é", "", "x" * 129])
def test_a_uid_that_needs_escaping_gives_no_review_key(uid: str) -> None:
    req = request(fixture("seldon-seed.yaml"))
    req["uid"] = uid
    assert memo.review_key(review_bytes(req)) is None


def test_a_body_without_uid_or_too_large_gives_no_review_key() -> None:
    assert memo.review_key(b'{"kind":"AdmissionReview"}') is None
    obj = fixture("seldon-seed.yaml")
    obj["spec"]["padding"] = "x" * memo.MAX_KEY_BYTES
    assert memo.review_key(review_bytes(request(obj))) is None


async def remember(body: bytes, resolver: Resolver, decisions: DecisionMemo) -> Response:
    return await admit(parse_review(body), resolver=resolver, decisions=decisions, review_key=memo.review_key(body))


def replayed(body: bytes, resolver: Resolver, decisions: DecisionMemo) -> dict[str, Any] | None:
    key = memo.review_key(body)
    assert key is not None
    answer = replay(key, resolver=resolver, decisions=decisions)
    return None if answer is None else orjson.loads(answer)


@pytest.mark.parametrize("name", ["seldon-seed.yaml", "trainedmodel.yaml"])
async def test_a_repeated_review_is_replayed_with_its_own_uid(
    name: str, resolver: Resolver, decisions: DecisionMemo
) -> None:
    obj = fixture(name)
    first = await remember(review_bytes(request(obj)), resolver, decisions)
    assert first["allowed"] and "patch" in first and "warnings" not in first
    again = request(obj)
    replays = memo_count("review")
    answer = replayed(review_bytes(again), resolver, decisions)
    assert answer is not None and memo_count("review") == replays + 1
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == again["uid"]
    assert without_uid(answer["response"]) == without_uid(first)


@pytest.mark.parametrize("same_value", [False, True])
async def test_a_first_uid_that_is_not_the_requests_is_never_replayed(
    same_value: bool, resolver: Resolver, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    req = request(obj)
    obj["metadata"]["uid"] = req["uid"] if same_value else "0b1ec7-0000"

    def body(object_uid: str) -> bytes:
        # the object, and so its uid, ahead of the request's uid
        changed = copy.deepcopy(obj)
        changed["metadata"]["uid"] = object_uid
        return review_bytes({"object": changed, **{k: v for k, v in req.items() if k != "object"}})

    first = body(obj["metadata"]["uid"])
    key = memo.review_key(first)
    assert key is not None and key.uid == obj["metadata"]["uid"]
    assert (await remember(first, resolver, decisions))["uid"] == req["uid"]
    assert replayed(first, resolver, decisions) is None
    assert replayed(body("0b1ec7-1111"), resolver, decisions) is None


async def test_a_review_answered_by_its_spec_is_replayed_next_time(
    resolver: Resolver, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    await remember(review_bytes(request(obj)), resolver, decisions)
    dry = request(obj, dry_run=True)
    assert replayed(review_bytes(dry), resolver, decisions) is None
    hits = memo_count("hit")
    await remember(review_bytes(dry), resolver, decisions)
    assert memo_count("hit") == hits + 1
    assert replayed(review_bytes(request(obj, dry_run=True)), resolver, decisions) is not None


async def test_a_moved_alias_is_not_replayed_once_the_cache_entry_expires(
    resolver: Resolver, registry: FakeRegistry, clock: Clock, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    await remember(review_bytes(request(obj)), resolver, decisions)
    assert replayed(review_bytes(request(obj)), resolver, decisions) is not None
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    assert replayed(review_bytes(request(obj)), resolver, decisions) is None
    later = await remember(review_bytes(request(obj)), resolver, decisions)
    assert at(apply_response(obj, later), DEMO1) == seed_uri("iris demo1", 2)


async def test_an_edited_spec_answered_by_its_fields_leaves_its_body_unremembered(
    resolver: Resolver, decisions: DecisionMemo
) -> None:
    obj = fixture("seldon-seed.yaml")
    await remember(review_bytes(request(obj)), resolver, decisions)
    entries = len(decisions)
    edited = copy.deepcopy(obj)
    edited["spec"]["predictors"][0]["replicas"] = 7
    fields = memo_count("fields")
    await remember(review_bytes(request(edited)), resolver, decisions)
    assert memo_count("fields") == fields + 1
    assert len(decisions) == entries
    assert replayed(review_bytes(request(edited)), resolver, decisions) is None
