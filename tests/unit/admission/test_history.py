from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.support.admitting import response_to
from tests.support.fakes import Clock, FakeRegistry, apply_response, seed_uri
from tests.support.reviews import DEMO1, RECONCILER, SEED_POINTERS, fixture, request
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import (
    HISTORY,
    MAX_ENTRIES_PER_FIELD,
    MAX_HISTORY_BYTES,
    Entry,
    append_history,
    dump_history,
)

START = "2023-11-14T22:13:20Z"  # the fake clock's start


def history(obj: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    value: dict[str, list[dict[str, str]]] = orjson.loads(obj["metadata"]["annotations"].get(HISTORY, "{}"))
    return value


@pytest.fixture
async def created(resolver: Resolver) -> dict[str, Any]:
    seed = fixture("seldon-seed.yaml")
    return apply_response(seed, await response_to(request(seed), resolver=resolver))


async def touch(obj: dict[str, Any], resolver: Resolver, clock: Clock) -> dict[str, Any]:
    """The reconciler's touch: a new refresh token, sent as the reconciler."""
    touched = copy.deepcopy(obj)
    touched["metadata"]["annotations"][records.REFRESH] = str(clock.ms)
    response = await response_to(request(touched, "UPDATE", old=obj, username=RECONCILER), resolver=resolver)
    return apply_response(touched, response)


async def test_a_create_records_each_field_as_created(created: dict[str, Any]) -> None:
    assert history(created) == {
        pointer: [{"version": "1", "uri": seed_uri(model, 1), "at": START, "cause": "created"}]
        for pointer, model in SEED_POINTERS.items()
    }


async def test_readmission_adds_nothing(created: dict[str, Any], resolver: Resolver, clock: Clock) -> None:
    clock.advance(3600)
    for operation in ("CREATE", "UPDATE"):
        response = await response_to(request(created, operation, old=created), resolver=resolver)
        assert response == {"allowed": True}
    # a re-apply from git: the templates, the records and history kept by the merge
    reapplied = fixture("seldon-seed.yaml")
    reapplied["metadata"] = copy.deepcopy(created["metadata"])
    out = apply_response(reapplied, await response_to(request(reapplied, "UPDATE", old=created), resolver=resolver))
    assert out["metadata"] == created["metadata"]


async def test_a_registry_move_then_a_template_change(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(60)
    moved = await touch(created, resolver, clock)
    assert history(moved)[DEMO1][-1] == {
        "version": "2",
        "uri": seed_uri("iris demo1", 2),
        "at": "2023-11-14T22:14:20Z",
        "cause": "moved",
    }
    assert len(history(moved)[DEMO1]) == 2
    assert all(len(history(moved)[p]) == 1 for p in SEED_POINTERS if p != DEMO1)  # unchanged fields: nothing
    changed = copy.deepcopy(moved)
    jsonpatch.JsonPointer(DEMO1).set(changed, '{{ mlflow.blob["iris demo1/1"] }}')
    response = await response_to(request(changed, "UPDATE", old=moved), resolver=resolver)
    out = apply_response(changed, response)
    assert [e["cause"] for e in history(out)[DEMO1]] == ["created", "moved", "template"]
    assert history(out)[DEMO1][-1]["version"] == "1"


async def test_history_is_bounded_per_field(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    obj = created
    for step in range(MAX_ENTRIES_PER_FIELD + 3):
        registry.set_alias("iris demo1", "champion", 2 - step % 2)
        clock.advance(31)
        obj = await touch(obj, resolver, clock)
    entries = history(obj)[DEMO1]
    assert len(entries) == MAX_ENTRIES_PER_FIELD
    assert entries[0]["cause"] == "moved"  # the oldest went first
    assert entries[-1]["version"] == str(2 - (MAX_ENTRIES_PER_FIELD + 2) % 2)  # the last step's


async def test_a_sender_that_drops_the_history_appends_to_the_stored_one(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    touched = copy.deepcopy(created)
    touched["metadata"]["annotations"][records.REFRESH] = str(clock.ms)
    del touched["metadata"]["annotations"][HISTORY]
    response = await response_to(request(touched, "UPDATE", old=created, username=RECONCILER), resolver=resolver)
    out = apply_response(touched, response)
    assert [e["cause"] for e in history(out)[DEMO1]] == ["created", "moved"]


async def test_a_damaged_history_is_replaced_with_a_warning(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    damaged = copy.deepcopy(created)
    damaged["metadata"]["annotations"][HISTORY] = "[1]"
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    touched = copy.deepcopy(damaged)
    touched["metadata"]["annotations"][records.REFRESH] = str(clock.ms)
    response = await response_to(request(touched, "UPDATE", old=damaged, username=RECONCILER), resolver=resolver)
    out = apply_response(touched, response)
    assert [e["cause"] for e in history(out)[DEMO1]] == ["moved"]
    assert f"ignored annotation {HISTORY}: not a JSON object" in response["warnings"]


async def test_a_hand_edit_to_a_literal_is_recorded_once(created: dict[str, Any], resolver: Resolver) -> None:
    edited = copy.deepcopy(created)
    jsonpatch.JsonPointer(DEMO1).set(edited, "s3://bucket/hand/picked")
    out = apply_response(edited, await response_to(request(edited, "UPDATE", old=created), resolver=resolver))
    assert history(out)[DEMO1][-1] == {"version": "", "uri": "s3://bucket/hand/picked", "at": START, "cause": "edit"}
    assert DEMO1 not in orjson.loads(out["metadata"]["annotations"][records.RESOLVED])
    assert await response_to(request(out, "UPDATE", old=out), resolver=resolver) == {"allowed": True}


async def test_past_the_byte_bound_the_oldest_entries_go_first(
    created: dict[str, Any], resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    old_entries = {
        f"/spec/other/{i}": [
            Entry(str(n), "s3://bucket/" + "x" * 200, f"2023-01-{n + 1:02d}T00:00:00Z", "moved") for n in range(10)
        ]
        for i in range(10)
    }
    big = copy.deepcopy(created)
    big["metadata"]["annotations"][HISTORY] = dump_history(old_entries)
    registry.set_alias("iris demo1", "champion", 2)
    clock.advance(31)
    out = await touch(big, resolver, clock)
    text = out["metadata"]["annotations"][HISTORY]
    assert len(text.encode()) <= MAX_HISTORY_BYTES
    expected = append_history(
        old_entries, DEMO1, Entry("2", seed_uri("iris demo1", 2), "2023-11-14T22:13:51Z", "moved")
    )
    assert text == dump_history(expected)
