"""From a parsed template to a model version and its artifact location.

Version selection, location lookup and caching live here; writing the URI for
the serving side is ``templating/uris.py``. The cache is what keeps admission fast: a
warm hit costs a dict lookup, concurrent misses for one reference share one
registry round trip, and when the registry fails a recent answer is served
with a warning instead of blocking every write in the cluster.

Lookups to one registry run at most ``max_concurrent_lookups`` at a time, below the
client's connection pool, so no call queues where waiting would look like the registry
timing out. Waiting lookups take turns by review (round robin over the callers'
deadlines), so one review naming a thousand references cannot hold the slots against
everyone else; a lookup nobody waits for any more is dropped before it starts.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from webhook import metrics
from webhook.config import Settings
from webhook.registry.clients import ModelVersion, NotFound, Registry, RegistryError, Unavailable
from webhook.registry.health import RegistryHealth, Snapshot, State
from webhook.registry.plans import Plan, ResolutionError, plan
from webhook.registry.servability import FlavorCache, MLmodelReader, NotChecked, Read, Servability, judge
from webhook.registry.slots import Slots
from webhook.registry.versions import artifact_location, select_version
from webhook.templating.causes import Cause
from webhook.templating.flavors import Need
from webhook.templating.grammar import Selector, SelectorKind, Template
from webhook.templating.uris import Flavor, ProfileError, VersionFields, map_artifact_root, render

__all__ = [
    "REFRESH_AHEAD",
    "Lookup",
    "Plan",
    "Resolution",
    "ResolutionError",
    "Resolver",
    "Slots",
    "artifact_location",
    "now_ms",
    "plan",
    "select_version",
]

T = TypeVar("T")

# Fraction of a TTL after which a served entry is renewed in the background.
REFRESH_AHEAD = 0.75


@dataclass(frozen=True, slots=True)
class Resolution:
    registry: str
    model: str
    selector: str
    version: ModelVersion
    location: str
    fetched_at_ms: int  # wall clock: compared with refresh tokens, which are wall-clock ms
    fetched_mono: float  # time.monotonic() at fetch: ages and TTLs, which a clock step must not stretch
    # what the version's MLmodel holds, read at fetch when servability is on anywhere; None when off
    flavors: Read | None = field(default=None, compare=False, repr=False)
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


@dataclass(slots=True)
class _Flight:
    started_ms: int
    started_mono: float
    epoch: int  # the registry circuit's epoch when the lookup started
    waiters: int = 0  # callers awaiting it now
    started: bool = False  # it holds a slot: its outcome is the registry's
    task: asyncio.Task[Resolution] = field(init=False)


@dataclass(frozen=True, slots=True)
class _Missing:
    """A recent "no such model, alias or version": answered again without asking, briefly."""

    fetched_at_ms: int
    fetched_mono: float
    message: str


class Resolver:
    def __init__(
        self,
        settings: Settings,
        registries: Mapping[str, Registry],
        clock_ms: Callable[[], int] = now_ms,
        health_clock: Callable[[], float] = time.monotonic,
        mono_clock: Callable[[], float] | None = None,
        *,
        read_local: bool = False,
    ) -> None:
        self.settings = settings
        self.registries = registries
        self.clock_ms = clock_ms
        if mono_clock is None:
            # a hand-moved wall clock (tests) moves cache ages too; otherwise ages are monotonic
            mono_clock = time.monotonic if clock_ms is now_ms else (lambda: clock_ms() / 1000)
        self.mono_clock = mono_clock
        self._health = {name: RegistryHealth(name, settings.registry_health, health_clock) for name in registries}
        self._slots = {
            name: Slots(name, settings.registries[name].max_concurrent_lookups if name in settings.registries else 16)
            for name in registries
        }
        self._cache: dict[tuple[str, str, str], Resolution] = {}
        self._missing: dict[tuple[str, str, str], _Missing] = {}
        self._flights: dict[tuple[str, str, str], _Flight] = {}
        self._plans: dict[tuple[str, str | None], Plan] = {}
        self._plan_chars = 0
        # read per field of every review; settings do not change while serving
        self._ttl_pinned = settings.cache.pinned_ttl_seconds
        self._ttl_floating = settings.cache.floating_ttl_seconds
        # MLmodel flavors are read at fetch only when some namespace checks them: a cache hit never asks
        self.reads_flavors = settings.servability != "off" or any(
            policy.servability not in (None, "off") for policy in settings.namespaces.values()
        )
        self._readers: dict[str, MLmodelReader] = {}
        if self.reads_flavors:
            for name, registry in registries.items():
                make = getattr(registry, "flavor_reader", None)  # a test double may have none
                if make is not None:
                    self._readers[name] = make(read_local=read_local)
        self._flavors = FlavorCache(settings.cache.max_entries)

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
        entry = self._usable(p, not_before_ms)
        if entry is None:
            return None
        if count:
            metrics.CACHE_RESULT["hit"].inc()
        return Lookup(entry)

    def _usable(self, p: Plan, not_before_ms: int) -> Resolution | None:
        """The cache entry for ``p`` if fresh and not older than ``not_before_ms``; renewed ahead of expiry."""
        entry = self._cache.get(p.key)
        if entry is None or entry.fetched_at_ms < not_before_ms:
            return None
        # taken once: this runs for every reference of every review
        age, ttl = self.mono_clock() - entry.fetched_mono, self._ttl(p.reference.selector)
        if age >= ttl:
            return None
        # past REFRESH_AHEAD of the TTL the entry is still served, and renewed in the background
        if age >= ttl * REFRESH_AHEAD and p.key not in self._flights and self._health[p.registry].allow():
            self._start_flight(p, self.clock_ms(), object())
        return entry

    def _start_flight(self, p: Plan, now: int, group: Hashable) -> _Flight:
        flight = _Flight(now, self.mono_clock(), self._health[p.registry].epoch)
        flight.task = asyncio.get_running_loop().create_task(self._fetch(p, flight, group))
        self._flights[p.key] = flight
        flight.task.add_done_callback(functools.partial(self._land, p.key, flight))
        return flight

    def _ttl(self, selector: Selector) -> float:
        return self._ttl_pinned if selector.pinned else self._ttl_floating

    def _known_missing(self, p: Plan, not_before_ms: int) -> _Missing | None:
        miss = self._missing.get(p.key)
        if miss is None or miss.fetched_at_ms < not_before_ms:
            return None  # a refresh token newer than the answer asks again, as for a found one
        if self.mono_clock() - miss.fetched_mono >= self.settings.cache.not_found_ttl_seconds:
            return None
        return miss

    async def resolve(self, p: Plan, *, not_before_ms: int = 0, deadline: float | None = None) -> Lookup:
        """Resolve ``p``; ``not_before_ms`` rejects cache entries fetched earlier.

        ``deadline`` is a ``time.monotonic()`` instant; the answer never comes later.
        """
        hit = self.cached(p, not_before_ms=not_before_ms)
        if hit is not None:
            return hit
        key = p.key
        missing = self._known_missing(p, not_before_ms)
        if missing is not None:
            metrics.CACHE_RESULT["not_found"].inc()
            metrics.RESOLUTION_RESULT["not_found"].inc()
            raise ResolutionError(Cause.NOT_FOUND, missing.message)
        cached = self._cache.get(key)
        fresh = cached is not None and self.mono_clock() - cached.fetched_mono < self._ttl(p.reference.selector)
        metrics.CACHE_RESULT["bypass" if fresh else "miss"].inc()
        if deadline is None:
            deadline = time.monotonic() + self.settings.lookup_deadline_seconds
        flight = self._flights.get(key)
        if flight is None or flight.started_ms < not_before_ms:
            health = self._health[p.registry]
            while not health.allow():
                if health.state is State.HALF_OPEN and time.monotonic() < deadline:
                    # a probe is out: its verdict, not the last outage, decides (within this deadline)
                    try:
                        async with asyncio.timeout_at(_loop_deadline(deadline)):
                            await health.settled()
                        continue
                    except TimeoutError:
                        pass
                # the registry is resting: answer now, from the cache or with 503, without asking it
                metrics.REGISTRY_SKIPPED.labels(p.registry).inc()
                return self._stale_or_raise(p, cached, _resting(health.snapshot()), not_before_ms)
            flight = self._flights.get(key)
            if flight is None or flight.started_ms < not_before_ms:
                # the caller's deadline groups its lookups: one per review, for the slots' turns
                flight = self._start_flight(p, self.clock_ms(), deadline)
            else:
                health.release(health.epoch)  # another caller started it while this one waited
        else:
            metrics.CACHE_RESULT["joined"].inc()
        flight.waiters += 1
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                # shield: one caller's deadline must not cancel the lookup others wait on.
                return Lookup(await asyncio.shield(flight.task))
        except TimeoutError:
            if flight.started:
                reason = f"registry {p.registry!r} did not answer within the lookup deadline"
            else:
                reason = (
                    f"the lookup did not start within the lookup deadline: registry {p.registry!r} takes "
                    f"{self.settings.registries[p.registry].max_concurrent_lookups} lookups at a time, and too "
                    "many were waiting"
                )
            return self._stale_or_raise(p, cached, reason, not_before_ms)
        except Unavailable as exc:
            return self._stale_or_raise(p, cached, str(exc), not_before_ms)
        except NotFound as exc:
            metrics.RESOLUTION_RESULT["not_found"].inc()
            raise ResolutionError(Cause.NOT_FOUND, str(exc)) from exc
        except RegistryError as exc:
            metrics.RESOLUTION_RESULT["invalid"].inc()
            raise ResolutionError(Cause.INVALID, str(exc)) from exc
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.started and not flight.task.done():
                # nobody waits for it any more and it never reached the registry: drop it
                metrics.REGISTRY_ABANDONED.labels(p.registry).inc()
                flight.task.cancel()

    async def resolve_many(
        self,
        plans: Iterable[Plan],
        *,
        not_before_ms: int = 0,
        deadline: float | None = None,
        limit: int | None = None,
    ) -> dict[tuple[str, str, str], Lookup | ResolutionError]:
        """Each distinct reference among ``plans`` resolved once: the door admission and the reconciler share.

        Cache hits are answered without leaving this coroutine (and counted together); only
        misses become tasks. ``deadline`` bounds them all (a review's); without one, each miss
        gets the lookup deadline from when it starts, and ``limit`` caps how many run at once
        (a compare over thousands of references). A reference that cannot be resolved maps
        to its ``ResolutionError``; anything else raised is modelpin's fault and propagates.
        """
        answers: dict[tuple[str, str, str], Lookup | ResolutionError] = {}
        misses: dict[tuple[str, str, str], Plan] = {}
        for p in plans:
            key = p.key
            if key in answers or key in misses:
                continue
            entry = self._usable(p, not_before_ms)
            if entry is None:
                misses[key] = p
            else:
                answers[key] = Lookup(entry)
        if answers:
            metrics.CACHE_RESULT["hit"].inc(len(answers))
        if not misses:
            return answers
        turns = asyncio.Semaphore(limit) if limit is not None else None

        async def one(p: Plan) -> Lookup | ResolutionError:
            try:
                if turns is None:
                    return await self.resolve(p, not_before_ms=not_before_ms, deadline=deadline)
                async with turns:
                    return await self.resolve(p, not_before_ms=not_before_ms, deadline=deadline)
            except ResolutionError as exc:
                return exc

        keys = list(misses)
        results = await asyncio.gather(*(one(misses[k]) for k in keys))
        answers.update(zip(keys, results, strict=True))
        return answers

    def _land(self, key: tuple[str, str, str], flight: _Flight, _task: object) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        health = self._health[key[0]]
        if flight.task.cancelled():
            health.release(flight.epoch)
            return
        error = flight.task.exception()
        if isinstance(error, Unavailable):
            health.failure(error.kind, flight.epoch)
        elif error is None or isinstance(error, RegistryError):
            health.success(flight.epoch)  # a not-found is an answer: the registry is up
        else:
            health.release(flight.epoch)  # modelpin's own fault says nothing about the registry
        if isinstance(error, NotFound):
            self._remember_missing(key, flight, str(error))
        if error is not None:
            return
        result = flight.task.result()
        current = self._cache.get(key)
        if current is None or current.fetched_at_ms <= result.fetched_at_ms:
            self._cache[key] = result
            self._missing.pop(key, None)
            if len(self._cache) > self.settings.cache.max_entries:
                del self._cache[next(iter(self._cache))]

    def _remember_missing(self, key: tuple[str, str, str], flight: _Flight, message: str) -> None:
        if self.settings.cache.not_found_ttl_seconds <= 0:
            return
        current = self._cache.get(key)
        if current is not None and current.fetched_at_ms <= flight.started_ms:
            del self._cache[key]  # the registry no longer has what it named: not served again
        self._missing[key] = _Missing(flight.started_ms, flight.started_mono, message)
        if len(self._missing) > self.settings.cache.max_entries:
            del self._missing[next(iter(self._missing))]

    def _stale_or_raise(self, p: Plan, cached: Resolution | None, reason: str, not_before_ms: int) -> Lookup:
        # An entry older than the object's refresh token is never used (DESIGN.md section 4).
        if cached is not None and cached.fetched_at_ms >= not_before_ms:
            age_s = self.mono_clock() - cached.fetched_mono
            if age_s <= self.settings.cache.max_stale_seconds:
                metrics.RESOLUTION_RESULT["stale"].inc()
                return Lookup(
                    cached,
                    f"{p.reference}: {reason}; serving version {cached.version.version} resolved {age_s:.0f}s ago",
                )
        metrics.RESOLUTION_RESULT["unavailable"].inc()
        raise ResolutionError(Cause.UNAVAILABLE, f"{reason}, and no usable cached resolution")

    async def _fetch(self, p: Plan, flight: _Flight, group: Hashable) -> Resolution:
        begun = time.monotonic()  # the callers' deadlines count from about now
        registry = self.registries[p.registry]
        slots = self._slots[p.registry]
        await slots.acquire(group)
        try:
            flight.started = True
            metrics.REGISTRY_LOOKUPS.labels(p.registry).inc()
            version = await select_version(registry, p.reference)
            location = await artifact_location(registry, version)
            flavors = await self._read_flavors(p, version, location, begun) if self.reads_flavors else None
        finally:
            slots.release()
        roots = self.settings.registries[p.registry].artifact_roots
        return Resolution(
            registry=p.registry,
            model=p.reference.name,
            selector=str(p.reference.selector),
            version=version,
            location=map_artifact_root(location, roots),
            fetched_at_ms=flight.started_ms,
            fetched_mono=flight.started_mono,
            flavors=flavors,
        )

    async def _read_flavors(self, p: Plan, version: ModelVersion, location: str, begun: float) -> Read:
        """The version's MLmodel flavors, once per version; never past the lookup deadline, never raising."""
        reader = self._readers.get(p.registry)
        if reader is None:
            return NotChecked(f"registry {p.registry!r} offers no way to read MLmodel files")
        logged = p.reference.selector.kind is SelectorKind.LOGGED_MODEL
        key = (p.registry, version.name, version.version)
        found = self._flavors.get(key)
        if found is not None:
            return found
        # half of what is left of the lookup deadline: the version's answer must still reach its callers in time
        budget = (self.settings.lookup_deadline_seconds - (time.monotonic() - begun)) / 2
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                if logged:
                    read = await reader.read(location, logged_model=version.model_id)
                else:
                    read = await reader.read(location, model=version.name, version=version.version)
        except TimeoutError:
            read = NotChecked("reading the MLmodel file took longer than the lookup deadline", retry=True)
        except Exception as exc:  # a check that cannot be made is reported, never a failed resolution
            read = NotChecked(f"reading the MLmodel file failed: {type(exc).__name__}", retry=True)
        self._flavors.put(key, read)
        return read

    def servable(self, resolution: Resolution, need: Need | None) -> Servability:
        """Whether the server that ``need`` names can load the resolved version; in memory, no request."""
        read = resolution.flavors
        if read is None:
            return NotChecked("the MLmodel file was not read (servability is off)")
        if isinstance(read, NotChecked) and read.retry:
            # a passing failure: a later resolution of the same version may have read it since
            version = resolution.version
            read = self._flavors.get((resolution.registry, version.name, version.version)) or read
        return judge(read, need)

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

    def health_all(self) -> dict[str, Snapshot]:
        return {name: h.snapshot() for name, h in self._health.items()}

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
        epoch = health.epoch
        slots = self._slots[registry]
        try:
            await slots.acquire(object())
        except BaseException:
            health.release(epoch)
            raise
        try:
            result = await op(self.registries[registry])
        except Unavailable as exc:
            health.failure(exc.kind, epoch)
            raise
        except RegistryError:
            health.success(epoch)
            raise
        except BaseException:
            health.release(epoch)
            raise
        finally:
            slots.release()
        health.success(epoch)
        return result

    async def aclose(self) -> None:
        for flight in self._flights.values():
            flight.task.cancel()
        for registry in self.registries.values():
            await registry.aclose()


def _resting(health: Snapshot) -> str:
    """What users read while a registry's circuit is open: the state, never an exception's text."""
    failures = "failure" if health.consecutive_failures == 1 else "failures"
    last = f", last: {health.last_failure}" if health.last_failure else ""
    return (
        f"registry {health.registry!r} is unavailable ({health.consecutive_failures} consecutive {failures}{last}; "
        f"next try in {max(health.retry_in_seconds, 0.1):.1f}s)"
    )


def _loop_deadline(deadline: float) -> float:
    # asyncio's clock is time.monotonic() on every supported loop, but say so once.
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
