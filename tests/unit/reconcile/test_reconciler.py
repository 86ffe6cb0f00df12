"""The reconciler's decisions: whom to touch, what to report, and working only while leading."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from tests.support.fakes import FakeRegistry, make_settings
from tests.unit.reconcile.conftest import KIND, FakeKube, load, managed
from webhook.reconcile.index import Key
from webhook.reconcile.kube import Kind
from webhook.reconcile.loops import WorkDied
from webhook.reconcile.reconciler import Reconciler
from webhook.reconcile.watching import Watcher
from webhook.registry.clients import Unavailable
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HOLD, Hold, dump_hold, format_time


async def test_only_objects_whose_version_moved_are_touched(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(
        reconciler.index,
        [
            await managed(live, "moving", "models:/fraud@champion"),
            await managed(live, "pinned", "models:/fraud/2"),  # same model, pinned: its version cannot move
            await managed(live, "other", "models:/iris demo1@champion"),
        ],
    )
    assert await reconciler.compare() == 0
    assert kube.patches == []
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare({"fraud"}) == 1
    assert kube.touched() == {"moving"}
    _, patch = kube.patches[0]
    assert int(patch["metadata"]["annotations"][records.REFRESH]) > 0


async def test_a_compare_asks_the_resolver_once_per_reference(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not left to the resolver's cache: at scale a compare outlasts the floating TTL, and an
    # entry fetched for the first object using a model had expired by the last one.
    models = ["iris demo1", "iris demo2", "fraud"]
    load(reconciler.index, [await managed(live, f"o{i}", f"models:/{models[i % 3]}@champion") for i in range(30)])
    registry.set_alias("fraud", "champion", 3)
    asked: list[str] = []
    resolve = live.resolve

    async def counted(p: Any, **kwargs: Any) -> Any:
        asked.append(p.reference.name)
        return await resolve(p, **kwargs)

    monkeypatch.setattr(live, "resolve", counted)
    assert await reconciler.compare() == 10
    assert sorted(asked) == sorted(models)


async def test_paused_objects_are_never_touched(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    obj = await managed(live, "paused", "models:/fraud@champion")
    obj["metadata"]["annotations"][records.PAUSED] = "true"
    load(reconciler.index, [obj])
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare() == 0 and kube.attempts == 0


async def test_a_reference_that_stops_resolving_warns_once_per_interval_and_keeps_the_object(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(reconciler.index, [await managed(live, "orphan", "models:/fraud@champion")])
    del registry.aliases[("fraud", "champion")]
    for _ in range(3):
        assert await reconciler.compare() == 0
    assert kube.attempts == 0
    assert len(kube.events) == 1
    name, event_type, reason, message = kube.events[0]
    assert (name, event_type, reason) == ("orphan", "Warning", "ModelReferenceNotFound")
    assert message.startswith("/spec/predictor/model/storageUri: keeping the current version:")
    # and it resumes when the reference resolves again
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare() == 1


async def test_a_registry_that_cannot_answer_leaves_the_model_for_the_next_poll(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(reconciler.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.fail_with(Unavailable("registry down"))
    assert await reconciler.compare() == 0
    assert reconciler.poller.retry == {"fraud"}


class ScriptedLease:
    """LeaderLease's surface for lead(): holds, then fails as told."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.identity = "me"
        self.retry_period = 0.01
        self.leader = False
        self.reachable = True
        self.holder = "me"
        self.released = False

    async def try_acquire_or_renew(self) -> bool:
        return self.answers.pop(0) if self.answers else False

    def valid(self) -> bool:
        return self.leader and bool(self.answers)

    def remaining(self) -> float:
        return 1.0 if self.valid() else 0.0

    async def release(self) -> None:
        self.released = True


async def test_a_work_loop_that_dies_ends_lead_with_an_error(
    reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Watcher, kind: Kind) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(Watcher, "follow", broken)
    lease = ScriptedLease([True] * 100)
    with pytest.raises(WorkDied, match="KeyError"):
        await asyncio.wait_for(reconciler.lead(lease), 5)  # type: ignore[arg-type]
    assert lease.released and not reconciler.leading


async def test_a_lost_lease_stops_the_work(reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = asyncio.Event()

    async def working(self: Watcher, kind: Kind) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    monkeypatch.setattr(Watcher, "follow", working)
    lease = ScriptedLease([True, True, True])  # then renewals fail and valid() turns False
    task = asyncio.create_task(reconciler.lead(lease))  # type: ignore[arg-type]
    await asyncio.wait_for(stopped.wait(), 5)
    assert not reconciler.leading and not lease.leader
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not lease.released  # it was lost, not held: nothing to hand over


def test_the_work_is_named_after_its_steps(reconciler: Reconciler) -> None:
    assert reconciler.touches.retry is reconciler.poller.retry  # a touch that gave up is polled again
    assert reconciler.watcher.synced is reconciler.synced
    assert KIND in reconciler.kinds


# --- holds and gates -------------------------------------------------------------------------------


def _held(obj: dict[str, Any], until: dt.datetime | None, reason: str = "incident") -> dict[str, Any]:
    since = format_time(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    hold = Hold(reason, since, format_time(until) if until is not None else None, "alice")
    obj["metadata"]["annotations"][HOLD] = dump_hold(hold)
    return obj


async def test_an_object_under_a_hold_in_force_is_not_touched_and_one_whose_hold_ended_is(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    load(
        reconciler.index,
        [
            _held(await managed(live, "held", "models:/fraud@champion"), later),
            _held(await managed(live, "forever", "models:/fraud@champion"), None),
            _held(await managed(live, "ended", "models:/fraud@champion"), earlier),
        ],
    )
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare() == 1
    assert kube.touched() == {"ended"}


async def test_a_hold_ending_during_the_term_moves_its_object_and_says_so(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.2)
    load(reconciler.index, [_held(await managed(live, "held", "models:/fraud@champion"), ends, "bad canary")])
    registry.set_alias("fraud", "champion", 3)
    await reconciler.expire_holds()
    assert kube.attempts == 0 and kube.events == []  # not yet
    await asyncio.sleep(max(0.0, (ends - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    await reconciler.expire_holds()
    await reconciler.expire_holds()  # once
    assert kube.touched() == {"held"}
    assert kube.events == [("held", "Normal", "HoldExpired", "hold expired (reason: bad canary); moving fraud 2 -> 3")]


async def test_a_hold_ending_with_nothing_to_move_says_the_registry_names_what_runs(
    reconciler: Reconciler, live: Resolver, kube: FakeKube
) -> None:
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.2)
    load(reconciler.index, [_held(await managed(live, "held", "models:/fraud@champion"), ends, "bad canary")])
    await reconciler.expire_holds()
    await asyncio.sleep(max(0.0, (ends - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    await reconciler.expire_holds()
    assert kube.attempts == 0
    assert kube.events == [
        ("held", "Normal", "HoldExpired", "hold expired (reason: bad canary); the registry names the versions running")
    ]


async def test_compare_gives_each_touched_objects_moves_when_asked(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(
        reconciler.index,
        [await managed(live, "moving", "models:/fraud@champion"), await managed(live, "pinned", "models:/fraud/2")],
    )
    registry.set_alias("fraud", "champion", 3)
    moves: dict[Key, list[str]] = {}
    assert await reconciler.compare(moves=moves) == 1
    assert list(moves.values()) == [["fraud 2 -> 3"]]
    assert kube.touched() == {"moving"}


async def test_a_hold_that_ended_before_the_term_began_is_not_announced(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    load(reconciler.index, [_held(await managed(live, "old", "models:/fraud@champion"), ended)])
    await reconciler.expire_holds()
    assert kube.events == []


def _gated_reconciler(registry: FakeRegistry, kube: FakeKube) -> tuple[Reconciler, Resolver]:
    settings = make_settings(namespaces={"team": {"require_tags": {"validation_status": "passed"}}})
    resolver = Resolver(settings, {"mlflow": registry})
    return Reconciler(resolver, kube, [KIND]), resolver  # type: ignore[arg-type]


async def test_a_move_to_a_version_without_the_required_tag_waits_with_one_warning(
    registry: FakeRegistry, kube: FakeKube
) -> None:
    reconciler, resolver = _gated_reconciler(registry, kube)
    registry.versions["fraud"]["2"] = replace(registry.versions["fraud"]["2"], tags={"validation_status": "passed"})
    load(reconciler.index, [await managed(resolver, "fraud", "models:/fraud@champion")])
    untagged = registry.versions["fraud"]["3"]
    registry.set_alias("fraud", "champion", 3)
    for _ in range(3):
        assert await reconciler.compare({"fraud"}) == 0
    assert kube.attempts == 0
    assert kube.events == [
        (
            "fraud",
            "Warning",
            "ModelVersionGated",
            "fraud@champion names version 3, which lacks validation_status=passed required in namespace team; "
            "keeping version 2",
        )
    ]
    assert "fraud" in reconciler.poller.retry  # the next poll looks again, whatever the search says
    registry.versions["fraud"]["3"] = replace(untagged, tags={"validation_status": "passed"})
    assert await reconciler.compare({"fraud"}) == 1
    await reconciler.touches.stop()
