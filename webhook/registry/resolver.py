"""From a parsed template to a model version and its artifact location.

Version selection, location lookup and caching live here; writing the URI for
the serving side is ``profiles``. The cache is what keeps admission fast: a
warm hit costs a dict lookup, concurrent misses for one reference share one
registry round trip, and when the registry fails a recent answer is served
with a warning instead of blocking every write in the cluster.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from webhook import metrics
from webhook.config import Settings
from webhook.registry.clients import ModelVersion, NotFound, Registry, RegistryError, Unavailable
from webhook.registry.health import RegistryHealth, Snapshot
from webhook.templating.causes import Cause
from webhook.templating.grammar import Reference, Selector, SelectorKind, Template
from webhook.templating.uris import Flavor, ProfileError, VersionFields, map_artifact_root, render

T = TypeVar("T")

# Fraction of a TTL after which a served entry is renewed in the background.
REFRESH_AHEAD = 0.75


class ResolutionError(Exception):
    def __init__(self, cause: Cause, message: str) -> None:
        self.cause = cause
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Plan:
    """A template with the configuration's defaults filled in."""

    registry: str
    profile: str
    reference: Reference  # selector is never DEFAULT here
    key: tuple[str, str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # the cache key, computed once: plans are memoised and looked up per field
        object.__setattr__(self, "key", (self.registry, self.reference.name, str(self.reference.selector)))


@dataclass(frozen=True, slots=True)
class Resolution:
    registry: str
    model: str
    selector: str
    version: ModelVersion
    location: str
    fetched_at_ms: int
    # URIs already written from this resolution, by (profile, flavor)
    rendered: dict[tuple[str, Flavor], str] = field(default_factory=dict, compare=False, repr=False)

    def fields(self) -> VersionFields:
        v = self.version
        return VersionFields(v.name, v.version, v.run_id, self.location, v.tags)


@dataclass(frozen=True, slots=True)
class Lookup:
    resolution: Resolution
    warning: str | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def plan(template: Template, namespace: str | None, settings: Settings) -> Plan:
    registry = template.registry or settings.default_registry
    profile = template.profile or settings.default_profile
    if registry not in settings.registries:
        known = ", ".join(sorted(settings.registries)) or "none"
        raise ResolutionError(Cause.INVALID, f"unknown registry {registry!r} (configured: {known})")
    if profile not in settings.known_profiles():
        known = ", ".join(sorted(settings.known_profiles()))
        raise ResolutionError(Cause.INVALID, f"unknown profile {profile!r} (known: {known})")
    policy = settings.policy(namespace)
    if not policy.allows_registry(registry):
        raise ResolutionError(
            Cause.POLICY,
            f"namespace {namespace!r} may not use registry {registry!r} (allowed: {policy.registries})",
        )
    ref = template.reference
    if not policy.allows_model(ref.name):
        raise ResolutionError(
            Cause.POLICY,
            f"namespace {namespace!r} may not use model {ref.name!r} (allowed patterns: {policy.models})",
        )
    if ref.selector.kind is SelectorKind.DEFAULT:
        selector = settings.selector_for(namespace)
        if selector is None:
            raise ResolutionError(
                Cause.INVALID,
                f"{ref.name!r} names no version and neither namespace {namespace!r} nor the global "
                "configuration sets a default selector; write name@alias, name/<version>, "
                "name/<stage> or name/latest",
            )
        ref = Reference(ref.name, selector)
    return Plan(registry, profile, ref)


async def select_version(registry: Registry, ref: Reference) -> ModelVersion:
    """Only READY versions count (DESIGN.md section 3.1)."""
    sel = ref.selector
    if sel.kind is SelectorKind.ALIAS:
        try:
            found = await registry.get_alias(ref.name, sel.value)
        except NotFound as exc:
            raise NotFound(f"model {ref.name!r} has no alias {sel.value!r}: {exc}") from exc
    elif sel.kind is SelectorKind.VERSION:
        try:
            found = await registry.get_version(ref.name, sel.value)
        except NotFound as exc:
            raise NotFound(f"model {ref.name!r} has no version {sel.value}: {exc}") from exc
    else:
        versions = [v for v in await registry.search_versions(ref.name) if v.status == "READY"]
        if sel.kind is SelectorKind.STAGE:
            versions = [v for v in versions if v.stage.lower() == sel.value.lower()]
        if not versions:
            where = f"in stage {sel.value}" if sel.kind is SelectorKind.STAGE else "at all"
            raise NotFound(f"model {ref.name!r} has no READY version {where}")
        return max(versions, key=lambda v: int(v.version))
    if found.status != "READY":
        raise NotFound(f"version {found.version} of {ref.name!r} ({sel}) is {found.status}, not READY")
    return found


async def artifact_location(registry: Registry, version: ModelVersion) -> str:
    """MLflow's download URI with ``runs:/`` and ``models:/m-`` expanded."""
    uri = version.source
    if uri.startswith("models:/"):
        # The server resolves logged-model sources to their storage location.
        uri = await registry.download_uri(version.name, version.version)
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].partition("/")
        root = await registry.run_artifact_uri(run_id)
        return f"{root.rstrip('/')}/{path}" if path else root
    if uri.startswith("models:/m-"):
        model_id, _, path = uri[len("models:/") :].partition("/")
        root = await registry.logged_model_artifact_uri(model_id)
        return f"{root.rstrip('/')}/{path}" if path else root
    return uri


@dataclass(slots=True)
class _Flight:
    started_ms: int
    task: asyncio.Task[Resolution]


class Resolver:
    def __init__(
        self,
        settings: Settings,
        registries: Mapping[str, Registry],
        clock_ms: Callable[[], int] = now_ms,
        health_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.registries = registries
        self.clock_ms = clock_ms
        self._health = {name: RegistryHealth(name, settings.registry_health, health_clock) for name in registries}
        self._cache: dict[tuple[str, str, str], Resolution] = {}
        self._flights: dict[tuple[str, str, str], _Flight] = {}
        self._plans: dict[tuple[str, str | None], Plan] = {}
        self._plan_chars = 0
        # read per field of every review; settings do not change while serving
        self._ttl_pinned_ms = settings.cache.pinned_ttl_seconds * 1000
        self._ttl_floating_ms = settings.cache.floating_ttl_seconds * 1000

    def plan(self, template: Template, namespace: str | None) -> Plan:
        # Settings do not change while serving, so a plan is a pure function of its inputs.
        # Keyed by the text (its hash is cached on the string), which determines the template.
        memo_key = (template.text, namespace)
        found = self._plans.get(memo_key)
        if found is None:
            found = plan(template, namespace, self.settings)
            # bounded in characters too: a namespace in a made-up review can be megabytes long
            size = len(template.text) + len(namespace or "")
            if len(self._plans) >= 4096 or self._plan_chars + size > 4 << 20:
                self._plans.clear()
                self._plan_chars = 0
            self._plans[memo_key] = found
            self._plan_chars += size
        return found

    def cached(self, p: Plan, *, not_before_ms: int = 0, count: bool = True) -> Lookup | None:
        """A fresh cache entry usable for ``p``, without awaiting anything.

        An entry past ``REFRESH_AHEAD`` of its TTL is still served, and a
        background lookup renews it: steady traffic never waits on the registry.
        ``count=False`` leaves the hit to the caller to count (in a batch).
        """
        entry = self._usable(p, not_before_ms, self.clock_ms())
        if entry is None:
            return None
        if count:
            metrics.CACHE_RESULT["hit"].inc()
        return Lookup(entry)

    def _usable(self, p: Plan, not_before_ms: int, now: int) -> Resolution | None:
        """The cache entry for ``p`` if fresh and not older than ``not_before_ms``; renewed ahead of expiry."""
        entry = self._cache.get(p.key)
        if entry is None or entry.fetched_at_ms < not_before_ms:
            return None
        # taken once: this runs for every reference of every review
        age, ttl = now - entry.fetched_at_ms, self._ttl_ms(p.reference.selector)
        if age >= ttl:
            return None
        # past REFRESH_AHEAD of the TTL the entry is still served, and renewed in the background
        if age >= ttl * REFRESH_AHEAD and p.key not in self._flights and self._health[p.registry].allow():
            self._start_flight(p, now)
        return entry

    def _start_flight(self, p: Plan, now: int) -> _Flight:
        flight = _Flight(now, asyncio.get_running_loop().create_task(self._fetch(p, now)))
        self._flights[p.key] = flight
        flight.task.add_done_callback(functools.partial(self._land, p.key, flight))
        return flight

    def _ttl_ms(self, selector: Selector) -> float:
        return self._ttl_pinned_ms if selector.pinned else self._ttl_floating_ms

    async def resolve(self, p: Plan, *, not_before_ms: int = 0, deadline: float | None = None) -> Lookup:
        """Resolve ``p``; ``not_before_ms`` rejects cache entries fetched earlier.

        ``deadline`` is a ``time.monotonic()`` instant; the answer never comes later.
        """
        hit = self.cached(p, not_before_ms=not_before_ms)
        if hit is not None:
            return hit
        key = p.key
        now = self.clock_ms()
        cached = self._cache.get(key)
        fresh = cached is not None and now - cached.fetched_at_ms < self._ttl_ms(p.reference.selector)
        metrics.CACHE_RESULT["bypass" if fresh else "miss"].inc()
        flight = self._flights.get(key)
        if flight is None or flight.started_ms < not_before_ms:
            health = self._health[p.registry]
            if not health.allow():
                # the registry is resting: answer now, from the cache or with 503, without asking it
                metrics.REGISTRY_SKIPPED.labels(p.registry).inc()
                return self._stale_or_raise(p, cached, _resting(health.snapshot()), not_before_ms)
            flight = self._start_flight(p, now)
        else:
            metrics.CACHE_RESULT["joined"].inc()
        if deadline is None:
            deadline = time.monotonic() + self.settings.lookup_deadline_seconds
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                # shield: one caller's deadline must not cancel the lookup others wait on.
                return Lookup(await asyncio.shield(flight.task))
        except TimeoutError:
            reason = f"registry {p.registry!r} did not answer within the lookup deadline"
            return self._stale_or_raise(p, cached, reason, not_before_ms)
        except Unavailable as exc:
            return self._stale_or_raise(p, cached, str(exc), not_before_ms)
        except NotFound as exc:
            metrics.RESOLUTION_RESULT["not_found"].inc()
            raise ResolutionError(Cause.NOT_FOUND, str(exc)) from exc
        except RegistryError as exc:
            metrics.RESOLUTION_RESULT["invalid"].inc()
            raise ResolutionError(Cause.INVALID, str(exc)) from exc

    def _land(self, key: tuple[str, str, str], flight: _Flight, _task: object) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        health = self._health[key[0]]
        if flight.task.cancelled():
            health.release()
            return
        error = flight.task.exception()
        if isinstance(error, Unavailable):
            health.failure(error.kind)
        elif error is None or isinstance(error, RegistryError):
            health.success()  # a not-found is an answer: the registry is up
        else:
            health.release()  # modelpin's own fault says nothing about the registry
        if error is not None:
            return
        result = flight.task.result()
        current = self._cache.get(key)
        if current is None or current.fetched_at_ms <= result.fetched_at_ms:
            self._cache[key] = result
            if len(self._cache) > self.settings.cache.max_entries:
                del self._cache[next(iter(self._cache))]

    def _stale_or_raise(self, p: Plan, cached: Resolution | None, reason: str, not_before_ms: int) -> Lookup:
        # An entry older than the object's refresh token is never used (DESIGN.md section 4).
        if cached is not None and cached.fetched_at_ms >= not_before_ms:
            age_s = (self.clock_ms() - cached.fetched_at_ms) / 1000
            if age_s <= self.settings.cache.max_stale_seconds:
                metrics.RESOLUTION_RESULT["stale"].inc()
                return Lookup(
                    cached,
                    f"{p.reference}: {reason}; serving version {cached.version.version} resolved {age_s:.0f}s ago",
                )
        metrics.RESOLUTION_RESULT["unavailable"].inc()
        raise ResolutionError(Cause.UNAVAILABLE, f"{reason}, and no usable cached resolution")

    async def _fetch(self, p: Plan, started_ms: int) -> Resolution:
        registry = self.registries[p.registry]
        metrics.REGISTRY_LOOKUPS.labels(p.registry).inc()
        version = await select_version(registry, p.reference)
        location = await artifact_location(registry, version)
        roots = self.settings.registries[p.registry].artifact_roots
        return Resolution(
            registry=p.registry,
            model=p.reference.name,
            selector=str(p.reference.selector),
            version=version,
            location=map_artifact_root(location, roots),
            fetched_at_ms=started_ms,
        )

    def uri(self, p: Plan, resolution: Resolution, flavor: Flavor) -> str:
        memo_key = (p.profile, flavor)
        found = resolution.rendered.get(memo_key)
        if found is not None:
            return found
        try:
            uri = render(p.profile, resolution.fields(), flavor, self.settings.profiles, self.settings.rclone.remotes())
        except ProfileError as exc:
            metrics.RESOLUTION_RESULT["invalid"].inc()
            raise ResolutionError(Cause.INVALID, str(exc)) from exc
        resolution.rendered[memo_key] = uri
        return uri

    # --- registry health, for /readyz and the reconciler ---------------------------------

    def health(self, registry: str) -> Snapshot:
        """The registry's circuit: closed (up), open (resting, with the time to the next probe) or half-open."""
        return self._health[registry].snapshot()

    def health_all(self) -> dict[str, Snapshot]:
        return {name: h.snapshot() for name, h in self._health.items()}

    def available(self, registry: str) -> bool:
        """Whether a call to ``registry`` would go out now (closed, or an interval ended and a probe may go)."""
        return self._health[registry].available()

    async def call(self, registry: str, op: Callable[[Registry], Awaitable[T]]) -> T:
        """``op`` on the registry's client, under its circuit: for calls made outside ``resolve``.

        Raises ``Unavailable`` at once while the circuit is open; otherwise the
        outcome counts toward the circuit as a resolution's does. ``op``'s own
        programming errors propagate and count for nothing.
        """
        health = self._health[registry]
        if not health.allow():
            metrics.REGISTRY_SKIPPED.labels(registry).inc()
            raise Unavailable(_resting(health.snapshot()), "circuit_open")
        try:
            result = await op(self.registries[registry])
        except Unavailable as exc:
            health.failure(exc.kind)
            raise
        except RegistryError:
            health.success()
            raise
        except BaseException:
            health.release()
            raise
        health.success()
        return result

    async def aclose(self) -> None:
        for flight in self._flights.values():
            flight.task.cancel()
        for registry in self.registries.values():
            await registry.aclose()


def _resting(health: Snapshot) -> str:
    """What users read while a registry's circuit is open: the state, never an exception's text."""
    failures = "failure" if health.consecutive_failures == 1 else "failures"
    return (
        f"registry {health.registry!r} is unavailable ({health.consecutive_failures} consecutive {failures}; "
        f"next try in {max(health.retry_in_seconds, 0.1):.1f}s)"
    )


def _loop_deadline(deadline: float) -> float:
    # asyncio's clock is time.monotonic() on every supported loop, but say so once.
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
