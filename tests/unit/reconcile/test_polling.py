"""Polling: one search per cycle, and only models whose search entry changed are compared."""

from __future__ import annotations

from tests.support.fakes import FakeRegistry, make_settings
from tests.unit.reconcile.conftest import KIND, FakeKube, load, managed
from webhook.reconcile.reconciler import Reconciler
from webhook.registry.clients import RegisteredModel
from webhook.registry.resolver import Resolver


class SearchingRegistry(FakeRegistry):
    """The fake registry plus search_registered_models, counted like every other call."""

    async def search_registered_models(self, page_size: int = 1000) -> list[RegisteredModel]:
        self.calls["search_registered_models"] += 1
        names = sorted(set(self.versions) | {name for name, _ in self.aliases})
        return [
            RegisteredModel(
                name=name,
                aliases={alias: v for (n, alias), v in self.aliases.items() if n == name},
                latest_versions=tuple(self.versions.get(name, {}).values()),
            )
            for name in names
        ]


async def test_a_poll_resolves_only_models_whose_search_entry_changed(registry: FakeRegistry, kube: FakeKube) -> None:
    searching = SearchingRegistry()
    searching.__dict__.update({k: v for k, v in registry.__dict__.items() if k != "calls"})
    live = Resolver(make_settings(), {"mlflow": searching})
    rec = Reconciler(live, kube, [KIND])  # type: ignore[arg-type]
    load(
        rec.index,
        [
            await managed(live, "moving", "models:/fraud@champion"),
            await managed(live, "pinned", "models:/fraud/2"),
            await managed(live, "other", "models:/iris demo1@champion"),
        ],
    )
    assert rec.poller.floating() == {"mlflow": {"fraud", "iris demo1"}}
    await rec.poller.poll_once()  # the first cycle knows no fingerprints: everything is compared once
    searching.calls.clear()
    assert await rec.poller.poll_once() == 0
    assert dict(searching.calls) == {"search_registered_models": 1}  # a quiet cycle: one call
    searching.set_alias("fraud", "champion", 3)
    assert await rec.poller.poll_once() == 1 and kube.touched() == {"moving"}
    # the search, then one lookup for the moved alias (the pinned reference is not looked up)
    assert searching.calls["search_registered_models"] == 2 and searching.lookups == 1
    await rec.touches.stop()


async def test_models_left_to_retry_are_compared_by_the_next_poll(registry: FakeRegistry, kube: FakeKube) -> None:
    searching = SearchingRegistry()
    searching.__dict__.update({k: v for k, v in registry.__dict__.items() if k != "calls"})
    rec = Reconciler(Resolver(make_settings(), {"mlflow": searching}), kube, [KIND])  # type: ignore[arg-type]
    load(rec.index, [await managed(rec.resolver, "moving", "models:/fraud@champion")])
    await rec.poller.poll_once()
    retry = rec.poller.retry
    retry.add("fraud")
    assert await rec.poller.changed_models() == {"fraud"}
    assert rec.poller.retry is retry and not retry  # emptied in place: the touches hold the same set
