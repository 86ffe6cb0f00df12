"""The index kept current: version changes reported, a lost watch followed by a relist and compare."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from tests.support.fakes import FakeRegistry, make_settings
from tests.unit.reconcile.conftest import KIND, FakeKube, load, managed
from webhook.reconcile.kube import ApiException
from webhook.reconcile.loops import Backoff
from webhook.reconcile.reconciler import Reconciler
from webhook.registry.resolver import Resolver


async def test_a_new_version_seen_by_the_watch_or_a_relist_is_reported(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    before = await managed(live, "moving", "models:/fraud@champion")
    load(reconciler.index, [before])
    registry.set_alias("fraud", "champion", 3)
    fresh = Resolver(make_settings(), {"mlflow": registry})  # the webhook re-admits with the new version
    after = await managed(fresh, "moving", "models:/fraud@champion")
    await reconciler.watcher.observe(KIND, after)
    assert kube.events == [("moving", "Normal", "ModelVersionChanged", "fraud: 2 -> 3 (@champion)")]
    # a change made while the watch was down is found by the relist
    registry.set_alias("fraud", "champion", 2)
    kube.listing = [await managed(Resolver(make_settings(), {"mlflow": registry}), "moving", "models:/fraud@champion")]
    assert await reconciler.watcher.relist(KIND) == "100"
    assert kube.events[1:] == [("moving", "Normal", "ModelVersionChanged", "fraud: 3 -> 2 (@champion)")]


async def test_a_relist_drops_what_it_did_not_return(reconciler: Reconciler, live: Resolver, kube: FakeKube) -> None:
    load(reconciler.index, [await managed(live, "gone", "models:/fraud@champion")])
    kube.listing = [await managed(live, "kept", "models:/fraud@champion")]
    await reconciler.watcher.relist(KIND)
    assert [t.name for t in reconciler.index.using(None)] == ["kept"]


async def test_a_lost_watch_is_followed_by_a_relist_and_compare(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Backoff, "next_delay", lambda self: 0.01)
    kube.listing = [await managed(live, "moving", "models:/fraud@champion")]
    kube.list_failures = [aiohttp.ClientConnectionError("Cannot connect to host")]  # the first list fails
    kube.watch_script = [[], ApiException(status=410, reason="Expired"), aiohttp.ServerDisconnectedError()]
    reconciler.leading = True
    task = asyncio.create_task(reconciler.watcher.follow(KIND))
    await asyncio.wait_for(kube.watched.wait(), 5)
    # the failed list, the first list, after 410 (a relist), after the disconnect (a relist)
    assert kube.lists == 4 and reconciler.is_synced()
    # a move made while the watch was down is found by the compare that follows the relist
    registry.set_alias("fraud", "champion", 3)
    kube.watch_script = [aiohttp.ServerDisconnectedError()]
    kube.watched.clear()
    # the quiet watch is waiting; end it the way a dropped connection would
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    task = asyncio.create_task(reconciler.watcher.follow(KIND))
    await asyncio.wait_for(kube.watched.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert kube.touched() == {"moving"}
