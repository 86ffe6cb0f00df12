from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY as PROMETHEUS

from tests.support.fakes import AZURE_ROOT, Clock, FakeRegistry, lookups_metric, make_settings, seed_catalog
from webhook.registry.clients import ModelVersion, NotFound, Registry, RegistryError, Unavailable
from webhook.registry.logged_models import LoggedModel, LoggedModelsUnsupported
from webhook.registry.resolver import (
    Plan,
    ResolutionError,
    Resolver,
    artifact_location,
    plan,
    select_version,
)
from webhook.registry.servability import RETRY_AFTER_SECONDS, FlavorCache, Flavors, Mismatch, NotChecked, Read, Servable
from webhook.registry.servable import mode
from webhook.templating.causes import Cause
from webhook.templating.flavors import Need
from webhook.templating.grammar import Reference, Selector, SelectorKind, parse
from webhook.templating.uris import Flavor

DOWN = "registry 'mlflow' answered 503: down"


def metric(name: str, **labels: str) -> float:
    return PROMETHEUS.get_sample_value(name, labels) or 0.0


def p(text: str, namespace: str | None = "default", resolver: Resolver | None = None) -> Plan:
    settings = resolver.settings if resolver else make_settings()
    return plan(parse(text), namespace, settings)


# --- plan ----------------------------------------------------------------------


def test_plan_fills_defaults() -> None:
    assert p("models:/fraud@champion") == Plan(
        "mlflow", "auto", Reference("fraud", Selector(SelectorKind.ALIAS, "champion"))
    )
    assert p("models:/fraud@champion").key == ("mlflow", "fraud", "@champion")
    assert p('{{ mlflow.s3["fraud/2"] }}') == Plan(
        "mlflow", "s3", Reference("fraud", Selector(SelectorKind.VERSION, "2"))
    )


def test_plan_default_selector_by_namespace() -> None:
    assert p("models:/fraud", "staging").reference.selector == Selector(SelectorKind.STAGE, "Staging")
    assert p("models:/fraud", "default").reference.selector == Selector(SelectorKind.ALIAS, "champion")
    assert p("models:/fraud", None).reference.selector == Selector(SelectorKind.ALIAS, "champion")


def test_plan_without_any_default_selector() -> None:
    settings = make_settings(default_selector=None)
    with pytest.raises(ResolutionError) as info:
        plan(parse('{{ mlflow.blob["iris demo1"] }}'), "team", settings)
    assert info.value.cause is Cause.INVALID
    assert str(info.value) == (
        "'iris demo1' names no version and neither namespace 'team' nor the global configuration sets a default "
        "selector; write name@alias, name/<version>, name/<stage> or name/latest"
    )
    # a namespace default is enough
    assert plan(parse("models:/fraud"), "staging", settings).reference.selector.kind is SelectorKind.STAGE


def test_plan_unknown_registry_and_profile() -> None:
    with pytest.raises(ResolutionError) as info:
        p('{{ other.s3["fraud/1"] }}')
    assert (info.value.cause, str(info.value)) == (Cause.INVALID, "unknown registry 'other' (configured: mlflow)")
    with pytest.raises(ResolutionError) as info:
        p('{{ mlflow.azure["fraud/1"] }}')
    assert (info.value.cause, str(info.value)) == (
        Cause.INVALID,
        "unknown profile 'azure' (known: auto, blob, gcs, modelcar, s3)",
    )


def test_plan_namespace_policy() -> None:
    settings = make_settings(
        registries={"mlflow": {"tracking_uri": "http://a"}, "other": {"tracking_uri": "http://b"}},
    )
    assert plan(parse("models:/fraud-x/1"), "restricted", settings).reference.name == "fraud-x"
    with pytest.raises(ResolutionError) as info:
        plan(parse("models:/jukebox/1"), "restricted", settings)
    assert info.value.cause is Cause.POLICY
    assert str(info.value) == "namespace 'restricted' may not use model 'jukebox' (allowed patterns: ['fraud*'])"
    with pytest.raises(ResolutionError) as info:
        plan(parse('{{ other.s3["fraud/1"] }}'), "restricted", settings)
    assert info.value.cause is Cause.POLICY
    assert str(info.value) == "namespace 'restricted' may not use registry 'other' (allowed: ['mlflow'])"
    # other namespaces are not restricted
    assert plan(parse('{{ other.s3["jukebox/1"] }}'), "default", settings).registry == "other"


# --- version selection -----------------------------------------------------------


async def test_select_alias_version_stage_latest(registry: FakeRegistry) -> None:
    def sel(text: str) -> Reference:
        return parse(text).reference

    assert (await select_version(registry, sel("models:/fraud@champion"))).version == "2"
    assert (await select_version(registry, sel("models:/fraud/3"))).version == "3"
    assert (await select_version(registry, sel("models:/fraud/production"))).version == "2"
    assert (await select_version(registry, sel("models:/fraud/Staging"))).version == "3"
    assert (await select_version(registry, sel("models:/fraud/Archived"))).version == "1"
    # version 4 is the highest but not READY
    assert (await select_version(registry, sel("models:/fraud/latest"))).version == "3"


async def test_latest_and_stage_compare_versions_as_numbers(registry: FakeRegistry) -> None:
    for v in range(5, 11):
        registry.add("fraud", v, f"s3://b/{v}", stage="Production")
    registry.add("fraud", 11, "s3://b/11", stage="Production", status="FAILED_REGISTRATION")
    assert (await select_version(registry, parse("models:/fraud/latest").reference)).version == "10"
    assert (await select_version(registry, parse("models:/fraud/Production").reference)).version == "10"


async def test_stage_without_ready_version(registry: FakeRegistry) -> None:
    with pytest.raises(NotFound) as info:
        await select_version(registry, parse("models:/fraud/None").reference)  # only version 4, not READY
    assert str(info.value) == "model 'fraud' has no READY version in stage None"
    with pytest.raises(NotFound) as info:
        await select_version(registry, parse("models:/nope/latest").reference)
    assert str(info.value) == "model 'nope' has no READY version at all"


async def test_alias_or_version_that_is_not_ready(registry: FakeRegistry) -> None:
    registry.set_alias("fraud", "next", 4)
    with pytest.raises(NotFound) as info:
        await select_version(registry, parse("models:/fraud@next").reference)
    assert str(info.value) == "version 4 of 'fraud' (@next) is PENDING_REGISTRATION, not READY"
    with pytest.raises(NotFound, match="version 4 of 'fraud' \\(/4\\) is PENDING_REGISTRATION"):
        await select_version(registry, parse("models:/fraud/4").reference)


async def test_missing_alias_and_version_messages(registry: FakeRegistry) -> None:
    with pytest.raises(NotFound) as info:
        await select_version(registry, parse("models:/fraud@gone").reference)
    # the registry's own text goes to the log, never into what users read
    assert str(info.value) == "model 'fraud' has no alias 'gone'"
    with pytest.raises(NotFound) as info:
        await select_version(registry, parse("models:/fraud/99").reference)
    assert str(info.value) == "model 'fraud' has no version 99"


# --- artifact location -----------------------------------------------------------


async def test_runs_source_is_expanded(registry: FakeRegistry) -> None:
    mv = registry.versions["iris demo1"]["1"]
    assert await artifact_location(registry, mv) == f"{AZURE_ROOT}/run-1-1/artifacts/model"
    registry.runs["slash"] = "s3://b/slash/artifacts/"
    assert await artifact_location(registry, registry.add("m", 1, "runs:/slash/a/b")) == "s3://b/slash/artifacts/a/b"
    assert await artifact_location(registry, registry.add("m", 2, "runs:/slash")) == "s3://b/slash/artifacts/"
    assert registry.calls["download_uri"] == 0


async def test_logged_model_source_is_expanded(registry: FakeRegistry) -> None:
    registry.logged_models["m-abc"] = "s3://mlflow/7/models/m-abc/artifacts/"
    mv = registry.add("lm", 1, "models:/m-abc")
    assert await artifact_location(registry, mv) == "s3://mlflow/7/models/m-abc/artifacts/"
    mv = registry.add("lm", 2, "models:/m-abc/sub/dir")
    assert await artifact_location(registry, mv) == "s3://mlflow/7/models/m-abc/artifacts/sub/dir"
    assert registry.calls["download_uri"] == 2
    assert registry.calls["logged_model_artifact_uri"] == 2


async def test_models_source_uses_the_servers_download_uri(registry: FakeRegistry) -> None:
    mv = registry.add("lm", 1, "models:/m-xyz")
    registry.downloads[("lm", "1")] = "s3://resolved/by/server"
    assert await artifact_location(registry, mv) == "s3://resolved/by/server"
    assert registry.calls["logged_model_artifact_uri"] == 0


async def test_plain_source_is_kept(registry: FakeRegistry) -> None:
    assert await artifact_location(registry, registry.versions["fraud"]["2"]) == "s3://mlflow/7/r2/artifacts/model"
    assert sum(registry.calls.values()) == 0


async def test_resolution_maps_artifact_roots(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.add("proxied", 1, "mlflow-artifacts:/3/abc/artifacts/model", run_id="abc")
    lookup = await resolver.resolve(p("models:/proxied/1"))
    assert lookup.resolution.location == "s3://mlflow-proxied/3/abc/artifacts/model"
    assert lookup.warning is None


# --- the resolver: cache ----------------------------------------------------------


async def test_resolution_fields(resolver: Resolver, clock: Clock) -> None:
    lookup = await resolver.resolve(p('{{ mlflow.blob["iris demo1"] }}'))
    res = lookup.resolution
    assert (res.registry, res.model, res.selector) == ("mlflow", "iris demo1", "@champion")
    assert res.version.version == "1"
    assert res.version.run_id == "run-1-1"
    assert res.location == f"{AZURE_ROOT}/run-1-1/artifacts/model"
    assert res.fetched_at_ms == clock.ms
    plan_ = p('{{ mlflow.blob["iris demo1"] }}')
    assert resolver.uri(plan_, res, Flavor.SELDON) == "wasbs://artifacts/mlflow/10/run-1-1/artifacts/model"
    assert resolver.uri(plan_, res, Flavor.KSERVE) == (
        "https://modelpinci.blob.core.windows.net/artifacts/mlflow/10/run-1-1/artifacts/model"
    )


async def test_cache_hit_after_first_lookup(resolver: Resolver, registry: FakeRegistry) -> None:
    plan_ = p("models:/fraud@champion")
    first = await resolver.resolve(plan_)
    registry.set_alias("fraud", "champion", 3)  # the cache does not know yet
    second = await resolver.resolve(plan_)
    assert registry.lookups == 1
    assert second.resolution is first.resolution
    # the profile is not part of the key: another template for the same reference shares the entry
    await resolver.resolve(p('{{ mlflow.s3["fraud@champion"] }}'))
    assert registry.lookups == 1


async def test_concurrent_misses_share_one_lookup(resolver: Resolver, registry: FakeRegistry) -> None:
    gate = registry.hang()
    before = lookups_metric()
    plan_ = p("models:/fraud@champion")
    tasks = [asyncio.create_task(resolver.resolve(plan_)) for _ in range(100)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert registry.calls["get_alias"] == 1
    assert registry.lookups == 1
    assert lookups_metric() - before == 1
    assert {r.resolution.version.version for r in results} == {"2"}
    assert all(r.warning is None for r in results)


async def test_pinned_and_floating_ttl(resolver: Resolver, registry: FakeRegistry, clock: Clock) -> None:
    pinned, floating = p("models:/fraud/2"), p("models:/fraud@champion")
    await resolver.resolve(pinned)
    await resolver.resolve(floating)
    assert registry.lookups == 2
    clock.advance(29.999)
    await resolver.resolve(pinned)
    await resolver.resolve(floating)
    assert registry.lookups == 2
    clock.advance(0.001)  # floating TTL (30 s) reached
    await resolver.resolve(pinned)
    await resolver.resolve(floating)
    assert registry.calls["get_alias"] == 2
    assert registry.calls["get_version"] == 1
    clock.advance(3570)  # 3600 s since the pinned lookup
    await resolver.resolve(pinned)
    assert registry.calls["get_version"] == 2


async def test_refresh_token_bypasses_an_older_entry(resolver: Resolver, registry: FakeRegistry, clock: Clock) -> None:
    plan_ = p("models:/fraud@champion")
    t0 = clock.ms
    assert (await resolver.resolve(plan_)).resolution.version.version == "2"
    registry.set_alias("fraud", "champion", 3)
    clock.advance(1)
    token = t0 + 500  # the registry changed after the entry was fetched
    assert (await resolver.resolve(plan_, not_before_ms=t0)).resolution.version.version == "2"  # not older
    assert registry.lookups == 1
    refreshed = await resolver.resolve(plan_, not_before_ms=token)
    assert refreshed.resolution.version.version == "3"
    assert refreshed.resolution.fetched_at_ms == t0 + 1000
    assert registry.lookups == 2
    # the new entry satisfies the token and serves everyone again
    assert (await resolver.resolve(plan_, not_before_ms=token)).resolution.version.version == "3"
    assert (await resolver.resolve(plan_)).resolution.version.version == "3"
    assert registry.lookups == 2


async def test_refresh_token_does_not_join_an_older_flight(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    gate = registry.hang()
    plan_ = p("models:/fraud@champion")
    old = asyncio.create_task(resolver.resolve(plan_))
    await asyncio.sleep(0)
    clock.advance(1)
    new = asyncio.create_task(resolver.resolve(plan_, not_before_ms=clock.ms))
    joined = asyncio.create_task(resolver.resolve(plan_, not_before_ms=clock.ms))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(old, new, joined)
    assert registry.lookups == 2


async def test_cache_evicts_beyond_max_entries(registry: FakeRegistry, clock: Clock) -> None:
    settings = make_settings(cache={"max_entries": 2})
    resolver = Resolver(settings, {"mlflow": registry}, clock_ms=clock)
    for text in ("models:/fraud/1", "models:/fraud/2", "models:/fraud/3"):
        await resolver.resolve(p(text))
    assert registry.lookups == 3
    await resolver.resolve(p("models:/fraud/3"))
    assert registry.lookups == 3
    await resolver.resolve(p("models:/fraud/1"))  # the oldest entry was evicted
    assert registry.lookups == 4


# --- the resolver: failures ----------------------------------------------------------


async def test_stale_entry_served_with_warning_then_denied(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    plan_ = p("models:/fraud@champion")
    await resolver.resolve(plan_)
    registry.fail_with(Unavailable(DOWN))
    clock.advance(31)
    lookup = await resolver.resolve(plan_)
    assert lookup.resolution.version.version == "2"
    assert lookup.warning == f"fraud@champion: {DOWN}; serving version 2 resolved 31s ago"
    clock.advance(569)  # 600 s old: still within max_stale_seconds
    assert (await resolver.resolve(plan_)).warning == f"fraud@champion: {DOWN}; serving version 2 resolved 600s ago"
    clock.advance(0.001)
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(plan_)
    assert info.value.cause is Cause.UNAVAILABLE
    assert str(info.value) == f"{DOWN}, and no usable cached resolution"
    # recovery: the registry answers again and the fresh entry is served without a warning
    registry.fail_with(None)
    lookup = await resolver.resolve(plan_)
    assert lookup.warning is None
    assert lookup.resolution.fetched_at_ms == clock.ms


async def test_unavailable_without_cache(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.fail_with(Unavailable(DOWN))
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(p("models:/fraud@champion"))
    assert info.value.cause is Cause.UNAVAILABLE
    assert str(info.value) == f"{DOWN}, and no usable cached resolution"


async def test_refresh_with_registry_down_never_serves_an_older_entry(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    plan_ = p("models:/fraud@champion")
    t0 = clock.ms
    await resolver.resolve(plan_)
    registry.fail_with(Unavailable(DOWN))
    clock.advance(2)
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(plan_, not_before_ms=t0 + 1)
    assert info.value.cause is Cause.UNAVAILABLE
    assert registry.lookups == 2
    # without a refresh token the same entry is still usable
    assert (await resolver.resolve(plan_)).resolution.version.version == "2"


async def test_not_found_is_never_served_stale(resolver: Resolver, registry: FakeRegistry, clock: Clock) -> None:
    plan_ = p("models:/fraud@champion")
    await resolver.resolve(plan_)
    del registry.aliases[("fraud", "champion")]
    clock.advance(31)
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(plan_)
    assert info.value.cause is Cause.NOT_FOUND
    assert str(info.value) == "model 'fraud' has no alias 'champion'"
    # a refresh sees the deletion even within the TTL
    registry.set_alias("fraud", "champion", 2)
    clock.advance(5)  # past the not-found TTL: asked again
    await resolver.resolve(plan_)
    registry.fail_with(NotFound("RESOURCE_DOES_NOT_EXIST: gone"))
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(plan_, not_before_ms=clock.ms + 1)
    assert info.value.cause is Cause.NOT_FOUND


async def test_other_registry_errors_are_invalid(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.fail_with(RegistryError("registry 'mlflow' answered 403: PERMISSION_DENIED: no"))
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(p("models:/fraud@champion"))
    assert info.value.cause is Cause.INVALID
    assert str(info.value) == "registry 'mlflow' answered 403: PERMISSION_DENIED: no"


async def test_location_lookup_failures_propagate(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.add("orphan", 1, "runs:/missing-run/model")
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(p("models:/orphan/1"))
    assert info.value.cause is Cause.NOT_FOUND
    assert "missing-run" in str(info.value)


async def test_uri_profile_errors_are_invalid(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.add("local", 1, "file:///tmp/mlruns/1/x/artifacts/model")
    plan_ = p("models:/local/1")
    lookup = await resolver.resolve(plan_)
    with pytest.raises(ResolutionError) as info:
        resolver.uri(plan_, lookup.resolution, Flavor.KSERVE)
    assert info.value.cause is Cause.INVALID
    assert str(info.value).startswith("artifact location 'file:///tmp/mlruns/1/x/artifacts/model' has no form")


# --- the resolver: deadlines ----------------------------------------------------------


async def test_deadline_without_cache(resolver: Resolver, registry: FakeRegistry) -> None:
    registry.hang()
    started = time.monotonic()
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(p("models:/fraud@champion"), deadline=started + 0.2)
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 0.35
    assert info.value.cause is Cause.UNAVAILABLE
    assert str(info.value) == (
        "registry 'mlflow' did not answer within the lookup deadline, and no usable cached resolution"
    )


async def test_default_deadline_comes_from_settings(registry: FakeRegistry, clock: Clock) -> None:
    resolver = Resolver(make_settings(lookup_deadline_seconds=0.1), {"mlflow": registry}, clock_ms=clock)
    gate = registry.hang()
    started = time.monotonic()
    with pytest.raises(ResolutionError):
        await resolver.resolve(p("models:/fraud@champion"))
    assert time.monotonic() - started < 1.5  # the registry never answers: only the 0.1 s deadline ends this
    gate.set()
    await resolver.aclose()


async def test_deadline_serves_stale_when_cached(resolver: Resolver, registry: FakeRegistry, clock: Clock) -> None:
    plan_ = p("models:/fraud@champion")
    await resolver.resolve(plan_)
    clock.advance(45)
    registry.hang()
    started = time.monotonic()
    lookup = await resolver.resolve(plan_, deadline=started + 0.15)
    assert time.monotonic() - started < 0.3
    assert lookup.resolution.version.version == "2"
    assert lookup.warning == (
        "fraud@champion: registry 'mlflow' did not answer within the lookup deadline; "
        "serving version 2 resolved 45s ago"
    )


async def test_a_timed_out_caller_does_not_cancel_the_shared_lookup(resolver: Resolver, registry: FakeRegistry) -> None:
    gate = registry.hang()
    plan_ = p("models:/fraud@champion")
    patient = asyncio.create_task(resolver.resolve(plan_, deadline=time.monotonic() + 5))
    with pytest.raises(ResolutionError):
        await resolver.resolve(plan_, deadline=time.monotonic() + 0.05)
    gate.set()
    assert (await patient).resolution.version.version == "2"
    assert registry.lookups == 1
    # the lookup landed in the cache
    await resolver.resolve(plan_)
    assert registry.lookups == 1


async def test_a_lookup_that_lands_after_the_deadline_fills_the_cache(
    resolver: Resolver, registry: FakeRegistry
) -> None:
    gate = registry.hang()
    plan_ = p("models:/fraud@champion")
    with pytest.raises(ResolutionError):
        await resolver.resolve(plan_, deadline=time.monotonic() + 0.02)
    gate.set()
    await asyncio.sleep(0.01)
    assert (await resolver.resolve(plan_, deadline=time.monotonic() + 0.02)).warning is None
    assert registry.lookups == 1


async def test_aclose_cancels_flights_and_closes_registries(registry: FakeRegistry, clock: Clock) -> None:
    resolver = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)
    registry.hang()
    with pytest.raises(ResolutionError):
        await resolver.resolve(p("models:/fraud@champion"), deadline=time.monotonic() + 0.01)
    flights = list(resolver._flights.values())
    assert len(flights) == 1
    await resolver.aclose()
    await asyncio.sleep(0)
    assert flights[0].task.cancelled()
    assert registry.closed


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


class OrderedRegistry(FakeRegistry):
    """Each alias lookup answers when its own gate opens, with what the registry said when it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = [asyncio.Event(), asyncio.Event()]

    async def get_alias(self, model: str, alias: str) -> ModelVersion:
        index = self.calls["get_alias"]
        self.calls["get_alias"] += 1
        answer = self.versions[model][self.aliases[(model, alias)]]
        await self.gates[index].wait()
        return answer


async def test_an_older_lookup_landing_late_does_not_replace_a_newer_entry(clock: Clock) -> None:
    registry = OrderedRegistry()
    seed_catalog(registry)
    resolver = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)
    plan_ = p("models:/fraud@champion")
    old = asyncio.create_task(resolver.resolve(plan_))
    await until(lambda: registry.calls["get_alias"] == 1)
    registry.set_alias("fraud", "champion", 3)
    clock.advance(1)
    new = asyncio.create_task(resolver.resolve(plan_, not_before_ms=clock.ms))
    await until(lambda: registry.calls["get_alias"] == 2)
    registry.gates[1].set()
    assert (await new).resolution.version.version == "3"
    registry.gates[0].set()
    assert (await old).resolution.version.version == "2"
    await asyncio.sleep(0)
    assert (await resolver.resolve(plan_)).resolution.version.version == "3"
    assert registry.calls["get_alias"] == 2


async def test_refresh_ahead_renews_a_served_entry_in_the_background(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    floating = p("models:/fraud@champion")
    first = await resolver.resolve(floating)
    clock.advance(20)  # under 0.75 of the 30 s TTL: plain hit
    assert (await resolver.resolve(floating)).resolution is first.resolution
    assert registry.calls["get_alias"] == 1
    registry.set_alias("fraud", "champion", 3)
    clock.advance(3)  # 23 s: past 0.75 of the TTL
    served = await resolver.resolve(floating)
    assert served.resolution is first.resolution  # answered from cache, not waiting
    await asyncio.sleep(0)  # let the background lookup run
    await asyncio.sleep(0)
    assert registry.calls["get_alias"] == 2
    renewed = resolver.cached(floating)
    assert renewed is not None and renewed.resolution.version.version == "3"
    clock.advance(29)  # the renewed entry is fresh well past the first one's expiry
    assert resolver.cached(floating) is not None


# --- the resolver: a registry that is down is not hammered ------------------------------


def resting_resolver(registry: FakeRegistry, clock: Clock, **health: float) -> Resolver:
    settings = make_settings(
        registry_health={"failure_threshold": 3, "open_seconds": 1.0, "max_open_seconds": 4.0, "jitter": 0, **health}
    )
    return Resolver(settings, {"mlflow": registry}, clock_ms=clock, health_clock=lambda: clock.ms / 1000)


async def test_an_open_circuit_answers_from_cache_or_503_without_calling(registry: FakeRegistry, clock: Clock) -> None:
    resolver = resting_resolver(registry, clock)
    cached = p("models:/fraud@champion")
    await resolver.resolve(cached)
    clock.advance(31)  # expired: every resolve below needs the registry
    registry.fail_with(Unavailable(DOWN, "server_error"))
    for _ in range(3):
        assert (await resolver.resolve(cached)).warning == f"fraud@champion: {DOWN}; serving version 2 resolved 31s ago"
    assert registry.lookups == 4
    circuit = resolver.health_all()["mlflow"]
    assert circuit.state.value == "open" and circuit.retry_in_seconds > 0
    # open: 20 reviews, no call; the cached reference is served stale, the uncached one denied
    for _ in range(10):
        lookup = await resolver.resolve(cached)
        assert lookup.resolution.version.version == "2"
        assert lookup.warning == (
            "fraud@champion: registry 'mlflow' is unavailable (3 consecutive failures, last: server_error; "
            "next try in 1.0s); "
            "serving version 2 resolved 31s ago"
        )
        with pytest.raises(ResolutionError) as info:
            await resolver.resolve(p("models:/fraud/3"))
        assert info.value.cause is Cause.UNAVAILABLE
        assert "no usable cached resolution" in str(info.value)
    assert registry.lookups == 4
    # the interval ends: one probe goes, fails, and the next interval is longer
    clock.advance(1)
    await resolver.resolve(cached)
    assert registry.lookups == 5
    assert resolver.health_all()["mlflow"].retry_in_seconds == 2.0
    clock.advance(1.9)
    await resolver.resolve(cached)
    assert registry.lookups == 5
    # the registry is back: the next probe closes the circuit and answers fresh
    registry.fail_with(None)
    registry.set_alias("fraud", "champion", 3)
    clock.advance(0.1)
    fresh = await resolver.resolve(cached)
    assert (fresh.warning, fresh.resolution.version.version) == (None, "3")
    assert resolver.health_all()["mlflow"].up
    assert (await resolver.resolve(p("models:/fraud/3"))).warning is None


async def test_not_found_counts_as_an_answer(registry: FakeRegistry, clock: Clock) -> None:
    resolver = resting_resolver(registry, clock)
    for i in range(5):
        with pytest.raises(ResolutionError) as info:
            await resolver.resolve(p(f"models:/nope@a{i}"))
        assert info.value.cause is Cause.NOT_FOUND
    assert resolver.health_all()["mlflow"].up
    assert registry.lookups == 5


async def test_refresh_ahead_waits_for_the_circuit(registry: FakeRegistry, clock: Clock) -> None:
    resolver = resting_resolver(registry, clock, open_seconds=60, max_open_seconds=60)
    floating = p("models:/fraud@champion")
    await resolver.resolve(floating)
    registry.fail_with(Unavailable(DOWN, "server_error"))
    for text in ("models:/fraud/1", "models:/fraud/2", "models:/fraud/3"):
        with pytest.raises(ResolutionError):
            await resolver.resolve(p(text))
    clock.advance(25)  # past 0.75 of the TTL, but the circuit is open: no background lookup
    assert resolver.cached(floating) is not None
    await asyncio.sleep(0)
    assert registry.lookups == 4
    registry.fail_with(None)
    resolver._health["mlflow"].success()  # closed again: the same hit renews in the background
    assert resolver.cached(floating) is not None
    await asyncio.sleep(0)
    assert registry.lookups == 5


async def test_call_runs_other_registry_calls_under_the_circuit(registry: FakeRegistry, clock: Clock) -> None:
    resolver = resting_resolver(registry, clock)

    async def search(reg: Registry) -> int:
        return len(await reg.search_versions("fraud"))

    assert await resolver.call("mlflow", search) == 4
    registry.fail_with(Unavailable(DOWN, "timeout"))
    for _ in range(3):
        with pytest.raises(Unavailable):
            await resolver.call("mlflow", search)
    calls = registry.calls["search_versions"]
    with pytest.raises(Unavailable) as info:
        await resolver.call("mlflow", search)
    assert info.value.kind == "circuit_open"
    assert str(info.value) == (
        "registry 'mlflow' is unavailable (3 consecutive failures, last: timeout; next try in 1.0s)"
    )
    assert resolver.health_all()["mlflow"].last_failure == "timeout"  # /readyz says the same
    assert registry.calls["search_versions"] == calls
    # resolutions see the same circuit
    with pytest.raises(ResolutionError):
        await resolver.resolve(p("models:/fraud/3"))
    assert registry.lookups == calls
    registry.fail_with(None)
    clock.advance(1)
    assert await resolver.call("mlflow", search) == 4
    assert resolver.health_all()["mlflow"].up


async def test_modelpins_own_errors_are_not_the_registrys(registry: FakeRegistry, clock: Clock) -> None:
    resolver = resting_resolver(registry, clock)
    registry.fail_with(ZeroDivisionError("a bug in modelpin"))
    for _ in range(5):
        with pytest.raises(ZeroDivisionError):
            await resolver.resolve(p("models:/fraud/3"))
    assert resolver.health_all()["mlflow"].up  # a bug never opens the circuit


# --- not-found answers, cached briefly -------------------------------------------------------


async def test_not_found_is_remembered_briefly(resolver: Resolver, registry: FakeRegistry, clock: Clock) -> None:
    missing = p("models:/nope@champion")
    for _ in range(3):
        with pytest.raises(ResolutionError) as info:
            await resolver.resolve(missing)
        assert info.value.cause is Cause.NOT_FOUND
        assert str(info.value) == "model 'nope' has no alias 'champion'"
    assert registry.lookups == 1
    # a refresh token newer than the answer asks again, as it does for a found one
    with pytest.raises(ResolutionError):
        await resolver.resolve(missing, not_before_ms=clock.ms + 1)
    assert registry.lookups == 2
    clock.advance(5)  # not_found_ttl_seconds
    with pytest.raises(ResolutionError):
        await resolver.resolve(missing)
    assert registry.lookups == 3


async def test_not_found_entries_are_bounded(registry: FakeRegistry, clock: Clock) -> None:
    resolver = Resolver(make_settings(cache={"max_entries": 3}), {"mlflow": registry}, clock_ms=clock)
    for i in range(10):
        with pytest.raises(ResolutionError):
            await resolver.resolve(p(f"models:/nope@a{i}"))
    assert len(resolver._missing) == 3
    with pytest.raises(ResolutionError):
        await resolver.resolve(p("models:/nope@a0"))  # the oldest was dropped: asked again
    assert registry.lookups == 11


# --- ages on a monotonic clock ----------------------------------------------------------------


async def test_a_wall_clock_step_back_does_not_extend_the_ttl(registry: FakeRegistry, clock: Clock) -> None:
    mono = [100.0]
    resolver = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock, mono_clock=lambda: mono[0])
    floating = p("models:/fraud@champion")
    await resolver.resolve(floating)
    clock.advance(-3600)  # the wall clock is stepped back an hour
    mono[0] += 31  # past the floating TTL of 30 s
    assert resolver.cached(floating) is None
    await resolver.resolve(floating)
    assert registry.lookups == 2
    # and stale-if-error judges age the same way
    registry.fail_with(Unavailable(DOWN, "server_error"))
    mono[0] += 601  # past max_stale_seconds, whatever the wall clock says
    clock.advance(-3600)
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve(floating)
    assert info.value.cause is Cause.UNAVAILABLE


# --- slots: a bounded number of lookups per registry, shared fairly --------------------------


def slotted(registry: FakeRegistry, clock: Clock, limit: int, **overrides: Any) -> Resolver:
    settings = make_settings(**overrides)
    settings.registries["mlflow"].max_concurrent_lookups = limit
    return Resolver(settings, {"mlflow": registry}, clock_ms=clock)


async def test_lookups_run_at_most_the_limit_at_once_and_take_turns_by_review(
    registry: FakeRegistry, clock: Clock
) -> None:
    resolver = slotted(registry, clock, 2)
    order: list[str] = []
    get_alias, get_version = registry.get_alias, registry.get_version

    async def alias(model: str, name: str) -> ModelVersion:
        order.append(model)
        return await get_alias(model, name)

    async def version(model: str, number: str) -> ModelVersion:
        order.append(model)
        return await get_version(model, number)

    registry.get_alias, registry.get_version = alias, version  # type: ignore[method-assign]
    gate = registry.hang()
    flood_deadline = time.monotonic() + 5
    flood = [asyncio.create_task(resolver.resolve(p(f"models:/nope@a{i}"), deadline=flood_deadline)) for i in range(50)]
    await asyncio.sleep(0.01)
    assert registry.lookups == 2  # two in flight, 48 waiting for a slot
    other = asyncio.create_task(resolver.resolve(p("models:/fraud/1"), deadline=time.monotonic() + 5))
    await asyncio.sleep(0.01)
    # release one slot at a time: the other review's lookup is served next, not after the 48
    registry.gate = None
    gate.set()
    lookup = await asyncio.wait_for(other, 1)
    assert lookup.resolution.version.version == "1"
    # the 2 sent first, then one more of the flood's before the rotation reaches the other review
    assert order.index("fraud") <= 3, order[:5]
    results = await asyncio.gather(*flood, return_exceptions=True)
    assert all(isinstance(r, ResolutionError) and r.cause is Cause.NOT_FOUND for r in results)
    await resolver.aclose()


async def test_waiting_for_a_slot_is_not_a_registry_failure(registry: FakeRegistry, clock: Clock) -> None:
    resolver = slotted(
        registry, clock, 1, registry_health={"failure_threshold": 1, "open_seconds": 1.0}, lookup_deadline_seconds=0.05
    )
    gate = registry.hang()
    abandoned = metric("modelpin_registry_lookups_abandoned_total", registry="mlflow")
    results = await asyncio.gather(
        *(resolver.resolve(p(f"models:/fraud/{v}")) for v in (1, 2, 3)), return_exceptions=True
    )
    assert all(isinstance(r, ResolutionError) and r.cause is Cause.UNAVAILABLE for r in results)
    assert "did not start within the lookup deadline" in str(results[2])
    assert registry.lookups == 1  # the two that never got a slot were dropped, never sent
    assert metric("modelpin_registry_lookups_abandoned_total", registry="mlflow") == abandoned + 2
    # the one that was sent is still the registry's to answer; the waiting ones are nobody's failure
    assert resolver.health_all()["mlflow"].up
    gate.set()
    await asyncio.sleep(0.01)
    assert resolver.health_all()["mlflow"].up
    await resolver.aclose()


# --- epochs and the half-open probe ----------------------------------------------------------


async def test_a_success_started_before_the_circuit_opened_does_not_close_it(
    registry: FakeRegistry, clock: Clock
) -> None:
    resolver = resting_resolver(registry, clock)
    gate = registry.hang()
    slow = asyncio.create_task(resolver.resolve(p("models:/fraud/1"), deadline=time.monotonic() + 5))
    await asyncio.sleep(0)
    health = resolver._health["mlflow"]
    for _ in range(3):
        health.failure("timeout", health.epoch)  # the outage, seen by other calls
    assert resolver.health_all()["mlflow"].state.value == "open"
    registry.gate = None
    gate.set()
    await slow  # answered, but it was sent before the circuit opened
    assert resolver.health_all()["mlflow"].state.value == "open"


async def test_reviews_wait_for_the_half_open_probe_instead_of_failing(registry: FakeRegistry, clock: Clock) -> None:
    resolver = resting_resolver(registry, clock)
    registry.fail_with(Unavailable(DOWN, "timeout"))
    for v in (1, 2, 3):
        with pytest.raises(ResolutionError):
            await resolver.resolve(p(f"models:/fraud/{v}"))
    assert resolver.health_all()["mlflow"].state.value == "open"
    registry.fail_with(None)
    clock.advance(1)
    gate = registry.hang()
    deadline = time.monotonic() + 2
    probe = asyncio.create_task(resolver.resolve(p("models:/fraud/1"), deadline=deadline))
    await asyncio.sleep(0.01)
    others = [
        asyncio.create_task(resolver.resolve(p(text), deadline=deadline))
        for text in ("models:/fraud/2", "models:/fraud/3", "models:/iris demo1@champion")
    ]
    await asyncio.sleep(0.01)
    assert not any(o.done() for o in others)  # waiting for the probe, not denied at once
    registry.gate = None
    gate.set()
    answers = await asyncio.gather(probe, *others)
    assert all(a.warning is None for a in answers)
    assert resolver.health_all()["mlflow"].up


# --- MLflow 3 logged models and MLmodel flavors --------------------------------------

LOGGED_ID = "m-" + "a1" * 16


class LoggedRegistry(FakeRegistry):
    """The fake with MLflow 3's logged models and an MLmodel reader over a dict of folders."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: dict[str, LoggedModel] = {}
        self.mlmodels: dict[str, Read] = {}  # location -> what its MLmodel holds
        self.unsupported = False
        self.read_gate: asyncio.Event | None = None

    async def logged_model(self, model_id: str) -> LoggedModel:
        await self._enter("logged_model")
        if self.unsupported:
            raise LoggedModelsUnsupported(f"registry 'mlflow' has no logged-model API (MLflow 2): models:/{model_id}")
        try:
            return self.logged[model_id]
        except KeyError:
            raise NotFound(f"RESOURCE_DOES_NOT_EXIST: {model_id}") from None

    def flavor_reader(self, *, read_local: bool = False) -> _DictReader:
        return _DictReader(self)


class _DictReader:
    def __init__(self, registry: LoggedRegistry) -> None:
        self.registry = registry

    async def read(self, location: str, **_: str | None) -> Read:
        self.registry.calls["read_mlmodel"] += 1
        if self.registry.read_gate is not None:
            await self.registry.read_gate.wait()
        return self.registry.mlmodels.get(location, NotChecked(f"cannot read {location}"))


def logged_model(status: str = "LOGGED_MODEL_READY") -> LoggedModel:
    return LoggedModel(LOGGED_ID, "model", f"s3://mlflow/1/models/{LOGGED_ID}/artifacts", status, "run-9", "1")


SK_NEED = Need("sklearn", "sklearn", "/spec/predictor/model/modelFormat/name")


def test_a_logged_model_reference_is_planned_without_a_default_selector() -> None:
    planned = p(f"models:/{LOGGED_ID}", resolver=Resolver(make_settings(default_selector=None), {}))
    assert planned.reference == Reference(LOGGED_ID, Selector(SelectorKind.LOGGED_MODEL, LOGGED_ID))


async def test_a_logged_model_resolves_to_its_location_and_stays_cached_as_a_pin() -> None:
    registry = LoggedRegistry()
    registry.logged[LOGGED_ID] = logged_model()
    clock = Clock()
    settings = make_settings()
    resolver = Resolver(settings, {"mlflow": registry}, clock_ms=clock)
    lookup = await resolver.resolve(p(f"models:/{LOGGED_ID}"))
    version = lookup.resolution.version
    assert (version.version, version.model_id, version.run_id) == (LOGGED_ID, LOGGED_ID, "run-9")
    assert lookup.resolution.location == f"s3://mlflow/1/models/{LOGGED_ID}/artifacts"
    # past the floating TTL, within the pinned one: no second call
    clock.advance(settings.cache.floating_ttl_seconds + 1)
    assert resolver.cached(p(f"models:/{LOGGED_ID}")) is not None
    assert registry.calls["logged_model"] == 1
    await resolver.aclose()


async def test_a_logged_model_not_ready_or_missing_is_not_found() -> None:
    registry = LoggedRegistry()
    registry.logged[LOGGED_ID] = logged_model("LOGGED_MODEL_PENDING")
    resolver = Resolver(make_settings(), {"mlflow": registry})
    with pytest.raises(ResolutionError, match="is PENDING, not READY") as info:
        await resolver.resolve(p(f"models:/{LOGGED_ID}"))
    assert info.value.cause is Cause.NOT_FOUND
    with pytest.raises(ResolutionError, match="has no logged model 'm-0"):
        await resolver.resolve(p("models:/m-" + "0" * 32))


async def test_an_mlflow2_registry_is_a_clear_request_error() -> None:
    registry = LoggedRegistry()
    registry.unsupported = True
    resolver = Resolver(make_settings(), {"mlflow": registry})
    with pytest.raises(ResolutionError, match=r"no logged-model API \(MLflow 2\)") as info:
        await resolver.resolve(p(f"models:/{LOGGED_ID}"))
    assert info.value.cause is Cause.INVALID


async def test_flavors_are_read_at_fetch_only_when_servability_is_on_somewhere() -> None:
    registry = LoggedRegistry()
    registry.add("iris", 1, "s3://m/1")
    registry.mlmodels["s3://m/1"] = Flavors(frozenset({"python_function"}), "s3://m/1/MLmodel")
    off = Resolver(make_settings(), {"mlflow": registry})
    assert (await off.resolve(p("models:/iris/1"))).resolution.flavors is None
    assert registry.calls["read_mlmodel"] == 0
    assert isinstance(off.servable((await off.resolve(p("models:/iris/1"))).resolution, SK_NEED), NotChecked)
    # on in one namespace only: read for everyone (the cache is shared), judged per namespace
    on = Resolver(make_settings(namespaces={"prod": {"servability": "deny"}}), {"mlflow": registry})
    modes = (mode(on.settings, "prod"), mode(on.settings, "dev"), mode(on.settings, None))
    assert modes == ("deny", "off", "off")
    res = (await on.resolve(p("models:/iris/1"))).resolution
    assert registry.calls["read_mlmodel"] == 1
    verdict = on.servable(res, SK_NEED)
    assert isinstance(verdict, Mismatch) and verdict.found == {"python_function"}
    assert isinstance(on.servable(res, None), Servable)
    # a cache hit is judged in memory
    hit = on.cached(p("models:/iris/1"))
    assert hit is not None and isinstance(on.servable(hit.resolution, SK_NEED), Mismatch)
    assert registry.calls["read_mlmodel"] == 1
    await off.aclose()
    await on.aclose()


async def test_one_read_per_version_across_references() -> None:
    registry = LoggedRegistry()
    registry.add("iris", 2, "s3://m/2")
    registry.set_alias("iris", "champion", 2)
    registry.mlmodels["s3://m/2"] = Flavors(frozenset({"sklearn"}), "s3://m/2/MLmodel")
    resolver = Resolver(make_settings(servability="warn"), {"mlflow": registry})
    for text in ("models:/iris/2", "models:/iris@champion", "models:/iris/latest"):
        res = (await resolver.resolve(p(text))).resolution
        assert isinstance(resolver.servable(res, SK_NEED), Servable)
    assert registry.calls["read_mlmodel"] == 1
    await resolver.aclose()


async def test_a_slow_mlmodel_read_is_not_checked_within_the_deadline() -> None:
    registry = LoggedRegistry()
    registry.add("iris", 1, "s3://m/1")
    registry.read_gate = asyncio.Event()  # never set: the read hangs
    resolver = Resolver(make_settings(servability="deny", lookup_deadline_seconds=0.2), {"mlflow": registry})
    started = time.monotonic()
    lookup = await resolver.resolve(p("models:/iris/1"))
    assert time.monotonic() - started < 1.0
    verdict = resolver.servable(lookup.resolution, SK_NEED)
    assert isinstance(verdict, NotChecked) and "lookup deadline" in verdict.reason
    await resolver.aclose()


async def test_a_registry_without_a_reader_is_not_checked() -> None:
    registry = FakeRegistry()
    registry.add("iris", 1, "s3://m/1")
    resolver = Resolver(make_settings(servability="warn"), {"mlflow": registry})
    verdict = resolver.servable((await resolver.resolve(p("models:/iris/1"))).resolution, SK_NEED)
    assert isinstance(verdict, NotChecked) and "no way to read" in verdict.reason
    await resolver.aclose()


async def test_a_passing_read_failure_is_judged_again_once_the_version_is_read() -> None:
    registry = LoggedRegistry()
    registry.add("iris", 1, "s3://m/1")
    registry.set_alias("iris", "champion", 1)
    registry.mlmodels["s3://m/1"] = NotChecked("the registry answered 503", retry=True)
    now = [0.0]
    resolver = Resolver(make_settings(servability="deny"), {"mlflow": registry})
    resolver._flavors = FlavorCache(clock=lambda: now[0])
    pinned = (await resolver.resolve(p("models:/iris/1"))).resolution
    assert isinstance(resolver.servable(pinned, SK_NEED), NotChecked)
    registry.mlmodels["s3://m/1"] = Flavors(frozenset({"sklearn"}), "s3://m/1/MLmodel")
    now[0] += RETRY_AFTER_SECONDS
    await resolver.resolve(p("models:/iris@champion"))  # the same version, read again
    # the pinned resolution, cached for an hour, is judged by the newer read
    assert isinstance(resolver.servable(pinned, SK_NEED), Servable)
    assert registry.calls["read_mlmodel"] == 2
    await resolver.aclose()


# --- resolve_many: the one door for a batch ------------------------------------


async def test_resolve_many_asks_once_per_distinct_reference_and_counts_hits_together(
    resolver: Resolver, registry: FakeRegistry
) -> None:
    champion, fraud2, nope = (
        p(t, resolver=resolver) for t in ("models:/fraud@champion", "models:/fraud/2", "models:/nope@x")
    )
    hits = metric("modelpin_cache_total", result="hit")
    misses = metric("modelpin_cache_total", result="miss")
    found = await resolver.resolve_many([champion, fraud2, champion, nope, champion])
    assert set(found) == {champion.key, fraud2.key, nope.key}
    assert registry.lookups == 3
    assert metric("modelpin_cache_total", result="miss") - misses == 3
    error = found[nope.key]
    assert isinstance(error, ResolutionError) and error.cause is Cause.NOT_FOUND
    again = await resolver.resolve_many([champion, fraud2, champion])
    assert registry.lookups == 3
    assert metric("modelpin_cache_total", result="hit") - hits == 2  # one per distinct reference, not per field
    assert again[champion.key] == found[champion.key]


async def test_resolve_many_respects_the_refresh_token(
    resolver: Resolver, registry: FakeRegistry, clock: Clock
) -> None:
    champion = p("models:/fraud@champion", resolver=resolver)
    await resolver.resolve_many([champion])
    clock.advance(1)
    await resolver.resolve_many([champion], not_before_ms=resolver.clock_ms())
    assert registry.lookups == 2


async def test_resolve_many_limit_caps_lookups_running_at_once(resolver: Resolver, registry: FakeRegistry) -> None:
    for n in range(6):
        registry.add(f"m{n}", 1, f"s3://b/m{n}/1")
    plans = [p(f"models:/m{n}/1", resolver=resolver) for n in range(6)]
    running = 0
    most = 0
    ask = registry.get_version

    async def counted(name: str, version: str) -> ModelVersion:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        try:
            return await ask(name, version)
        finally:
            running -= 1

    registry.get_version = counted  # type: ignore[method-assign]
    found = await resolver.resolve_many(plans, limit=2)
    assert all(not isinstance(v, ResolutionError) for v in found.values())
    assert most == 2
