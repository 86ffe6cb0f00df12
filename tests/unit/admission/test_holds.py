from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.support.admitting import response_to
from tests.support.fakes import Clock, FakeRegistry, apply_response, seed_uri
from tests.support.reviews import DEMO1, GRAPH, RECONCILER, fixture, request
from webhook.admission import holds
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HISTORY, HOLD, Hold, dump_hold, format_time

DEMO2 = f"{GRAPH}/children/0/children/0/modelUri"


def at(obj: Any, pointer: str) -> Any:
    return jsonpatch.JsonPointer(pointer).resolve(obj)


def resolved(obj: dict[str, Any]) -> dict[str, dict[str, str]]:
    value: dict[str, dict[str, str]] = orjson.loads(obj["metadata"]["annotations"][records.RESOLVED])
    return value


def causes(obj: dict[str, Any], pointer: str) -> list[str]:
    history = orjson.loads(obj["metadata"]["annotations"].get(HISTORY, "{}"))
    return [entry["cause"] for entry in history.get(pointer, [])]


def now(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.ms / 1000, dt.UTC)


def held(obj: dict[str, Any], clock: Clock, *, until_s: float | None = None, v: str | None = None) -> dict[str, Any]:
    """``obj`` with a hold as ``modelpin hold`` writes it; ``v``: the version named for DEMO1."""
    until = None if until_s is None else format_time(now(clock) + dt.timedelta(seconds=until_s))
    hold = Hold("incident 42", format_time(now(clock)), until, "alice", {} if v is None else {DEMO1: v})
    out = copy.deepcopy(obj)
    out["metadata"]["annotations"][HOLD] = dump_hold(hold)
    return out


async def update(obj: dict[str, Any], old: dict[str, Any], resolver: Resolver, **kw: Any) -> dict[str, Any]:
    return apply_response(obj, await response_to(request(obj, "UPDATE", old=old, **kw), resolver=resolver))


@pytest.fixture
async def created(resolver: Resolver) -> dict[str, Any]:
    seed = fixture("seldon-seed.yaml")
    return apply_response(seed, await response_to(request(seed), resolver=resolver))


def test_read_an_active_expired_and_damaged_hold(clock: Clock) -> None:
    obj: dict[str, Any] = {"metadata": {"annotations": {}}}
    assert holds.read(obj, now(clock)) == holds.Holding()
    assert holds.read(held(obj, clock), now(clock)).active
    assert holds.read(held(obj, clock, until_s=60), now(clock)).active
    expired = holds.read(held(obj, clock, until_s=-1), now(clock))
    assert expired.present and not expired.active
    assert holds.read(held(obj, clock, v="2"), now(clock)).version_for(DEMO1) == "2"
    assert holds.read(held(obj, clock, until_s=-1, v="2"), now(clock)).version_for(DEMO1) is None
    paused = holds.read({"metadata": {"annotations": {records.PAUSED: "true"}}}, now(clock))
    assert paused.active and paused.expiry is None and paused.version_for(DEMO1) is None
    damaged = holds.read({"metadata": {"annotations": {HOLD: "{"}}}, now(clock))
    assert not damaged.active and damaged.problem == f"ignored annotation {HOLD}: not JSON"


def test_bad_version() -> None:
    assert holds.bad_version("12") is None
    assert holds.bad_version("two") == f"{HOLD} names version 'two', which is not a version number"
    assert holds.bad_version("1" * 19) is not None
    assert holds.bad_version("\u0661") is not None  # a Unicode digit is not an MLflow version


async def test_a_hold_keeps_versions_across_a_move_and_a_reapply(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    on_hold = await update(held(created, clock), created, resolver)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    touched = copy.deepcopy(on_hold)
    touched["metadata"]["annotations"][records.REFRESH] = str(clock.ms)
    lookups = registry.lookups
    response = await response_to(request(touched, "UPDATE", old=on_hold, username=RECONCILER), resolver=resolver)
    assert response == {"allowed": True}
    assert registry.lookups == lookups
    # a re-apply from git: the templates again, the hold (not in git) untouched
    reapplied = fixture("seldon-seed.yaml")
    reapplied["metadata"] = copy.deepcopy(touched["metadata"])
    kept = await update(reapplied, touched, resolver)
    assert at(kept, DEMO1) == seed_uri("iris demo1", 1)
    assert resolved(kept) == resolved(created)
    assert causes(kept, DEMO1) == ["created"]
    # and that output admitted again is no patch
    assert await response_to(request(kept, "UPDATE", old=kept), resolver=resolver) == {"allowed": True}


async def test_a_hold_naming_a_version_rolls_the_field_back_to_it(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    seed = fixture("seldon-seed.yaml")
    registry.set_alias("iris demo1", "champion", 2)
    created = apply_response(seed, await response_to(request(seed), resolver=resolver))
    assert at(created, DEMO1) == seed_uri("iris demo1", 2)
    clock.advance(5)
    rolled = await update(held(created, clock, v="1"), created, resolver)
    assert at(rolled, DEMO1) == seed_uri("iris demo1", 1)
    assert resolved(rolled)[DEMO1] | {"run_id": ""} == {
        "registry": "mlflow",
        "model": "iris demo1",
        "selector": "@champion",  # the template's: the hold named the version
        "version": "1",
        "run_id": "",
        "uri": seed_uri("iris demo1", 1),
    }
    assert causes(rolled, DEMO1) == ["created", "rollback"]
    assert causes(rolled, DEMO2) == ["created"]  # held, not named: kept
    lookups = registry.lookups
    assert await response_to(request(rolled, "UPDATE", old=rolled), resolver=resolver) == {"allowed": True}
    reapplied = fixture("seldon-seed.yaml")
    reapplied["metadata"] = copy.deepcopy(rolled["metadata"])
    again = await update(reapplied, rolled, resolver)
    assert at(again, DEMO1) == seed_uri("iris demo1", 1)
    assert again["metadata"] == rolled["metadata"]
    assert registry.lookups == lookups


async def test_a_create_with_a_hold_resolves_the_template_or_the_named_version(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    registry.set_alias("iris demo1", "champion", 2)
    seed = fixture("seldon-seed.yaml")
    seed["metadata"]["annotations"] = {}
    plain = apply_response(seed, await response_to(request(held(seed, clock)), resolver=resolver))
    assert at(plain, DEMO1) == seed_uri("iris demo1", 2)
    named = apply_response(seed, await response_to(request(held(seed, clock, v="1")), resolver=resolver))
    assert at(named, DEMO1) == seed_uri("iris demo1", 1)
    assert causes(named, DEMO1) == ["created"]


async def test_a_hold_cannot_keep_a_record_the_stored_object_lacks(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    response = await response_to(request(held(created, clock)), resolver=resolver)  # CREATE: nothing stored
    out = apply_response(created, response)
    assert at(out, DEMO1) == seed_uri("iris demo1", 2)
    assert f"{DEMO1}: resolved although {HOLD} is set: only a record the stored object already holds is kept" in (
        " ".join(response["warnings"])
    )


async def test_an_expired_hold_is_ignored_and_the_move_is_a_release(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    on_hold = await update(held(created, clock, until_s=60), created, resolver)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(61)
    moved = await update(on_hold, on_hold, resolver)
    assert at(moved, DEMO1) == seed_uri("iris demo1", 2)
    assert causes(moved, DEMO1) == ["created", "released"]
    registry.set_alias("iris demo1", "champion", 1)
    clock.advance(31)
    back = await update(moved, moved, resolver)
    assert causes(back, DEMO1) == ["created", "released", "moved"]


async def test_a_released_hold_lets_the_field_move(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    on_hold = await update(held(created, clock), created, resolver)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    released = copy.deepcopy(on_hold)
    del released["metadata"]["annotations"][HOLD]
    moved = await update(released, on_hold, resolver)
    assert at(moved, DEMO1) == seed_uri("iris demo1", 2)
    assert causes(moved, DEMO1) == ["created", "released"]


async def test_a_hold_naming_a_bad_or_missing_version_is_denied(
    created: dict[str, Any], resolver: Resolver, clock: Clock
) -> None:
    bad = await response_to(request(held(created, clock, v="two"), "UPDATE", old=created), resolver=resolver)
    assert bad["allowed"] is False and bad["status"]["code"] == 422
    assert f"{DEMO1}: template " in bad["status"]["message"]
    assert f"{HOLD} names version 'two', which is not a version number" in bad["status"]["message"]
    fresh = fixture("seldon-seed.yaml")
    fresh["metadata"]["annotations"] = {}
    missing = await response_to(request(held(fresh, clock, v="9")), resolver=resolver)
    assert missing["allowed"] is False and missing["status"]["code"] == 404
    assert DEMO1 in missing["status"]["message"]


async def test_a_damaged_hold_is_ignored_with_a_warning(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    damaged = copy.deepcopy(created)
    damaged["metadata"]["annotations"][HOLD] = '{"reason": 1}'
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    response = await response_to(request(damaged, "UPDATE", old=damaged), resolver=resolver)
    assert at(apply_response(damaged, response), DEMO1) == seed_uri("iris demo1", 2)
    assert f"ignored annotation {HOLD}: reason, since and by must be strings" in response["warnings"]


def test_an_expired_hold_names_no_version_even_while_paused(clock: Clock) -> None:
    obj: dict[str, Any] = {"metadata": {"annotations": {records.PAUSED: "true"}}}
    holding = holds.read(held(obj, clock, until_s=-1, v="2"), now(clock))
    assert holding.active and holding.version_for(DEMO1) is None


def test_an_object_without_a_hold_reads_as_not_held(clock: Clock) -> None:
    at = now(clock)
    for obj in (None, {}, {"metadata": {}}, {"metadata": {"annotations": {"team": "fraud"}}}):
        assert holds.read(obj, at) is holds.NOT_HELD
    assert not holds.NOT_HELD.active and not holds.NOT_HELD.present and holds.NOT_HELD.problem is None
    paused = holds.read({"metadata": {"annotations": {records.PAUSED: "true"}}}, at)
    assert paused.active and paused.present
