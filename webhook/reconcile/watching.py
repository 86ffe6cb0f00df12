"""The index kept current: list every page, follow the watch (bookmarks keep its version recent), relist after a loss.

client-go's reflector in miniature: a watch resumes from its last resourceVersion;
410 Gone, or any lost watch, relists the kind and has it compared (a move made
while the watch was down is found that way), with jittered backoff between tries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.metrics import INDEX_SIZE, LAG
from webhook.reconcile.events import Events
from webhook.reconcile.index import Index, Key, Tracked, VersionChange
from webhook.reconcile.kube import KUBE_ERRORS, ApiException, Kind, Kube, describe
from webhook.reconcile.loops import Backoff, Once
from webhook.reconcile.touching import Toucher
from webhook.registry.resolver import now_ms
from webhook.templating import record_annotations as records

log = logging.getLogger("modelpin.reconciler")

SELECTOR = f"{records.MANAGED}=true"
UNSERVED_RELIST_SECONDS = 60.0  # a kind whose CRD is not installed is listed again this often


@dataclass(slots=True)
class Watcher:
    kube: Kube
    index: Index
    events: Events
    errors: Once
    synced: set[Kind]  # kinds listed and compared since the last loss
    touches: Toucher  # told what the watch shows, so a touch is known to have moved its object
    compare: Callable[[Kind], Awaitable[int]]  # the kind's compare after each (re)list
    publish: Callable[[], None]  # the synced and index-size gauges

    async def observe(self, kind: Kind, obj: Mapping[str, Any]) -> None:
        tracked, changes = self.index.upsert(kind, obj)
        INDEX_SIZE.set(len(self.index))
        self.touches.seen(tracked)
        await self._report(tracked, changes)

    async def _report(self, tracked: Tracked, changes: list[VersionChange]) -> None:
        """A ModelVersionChanged Event per changed reference, and the propagation lag."""
        for change in changes:
            if tracked.refresh_ms:
                LAG.observe(max(0.0, (now_ms() - tracked.refresh_ms) / 1000))
            await self.events.record(tracked, "Normal", "ModelVersionChanged", change.message())

    async def relist(self, kind: Kind) -> str | None:
        """List every page; the listed objects are all there is. None when the kind is not served."""
        listed: set[Key] = set()
        version = ""
        try:
            async for items, page_version in self.kube.list_pages(kind, SELECTOR):
                version = page_version
                for obj in items:
                    tracked, changes = self.index.upsert(kind, obj)
                    listed.add(tracked.key)
                    self.touches.seen(tracked)
                    await self._report(tracked, changes)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        for key in self.index.retain(kind, listed):
            self.touches.gone(key)
        self.publish()
        return version

    async def _watch_once(self, kind: Kind, version: str) -> str:
        """Follow one watch until the server ends it; returns the last resourceVersion seen."""
        async for event in self.kube.watch(kind, SELECTOR, version):
            obj = event.get("raw_object") or event.get("object") or {}
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            kind_of_event = event.get("type")
            if kind_of_event in ("ADDED", "MODIFIED"):
                await self.observe(kind, obj)
            elif kind_of_event == "DELETED":
                key = self.index.remove(kind, obj)
                self.touches.gone(key)
                INDEX_SIZE.set(len(self.index))
        return version

    async def follow(self, kind: Kind) -> None:
        """List, compare, then follow the watch; relist and compare after a lost watch."""
        backoff = Backoff()
        label = f"watch of {kind.plural}"
        while True:
            try:
                version = await self.relist(kind)
                if version is None:
                    # not installed (yet): nothing to manage, and no reason to be unready
                    self.errors.failed(("watch", kind), label, "the apiserver does not serve this kind")
                    self.synced.add(kind)
                    self.publish()
                    await asyncio.sleep(UNSERVED_RELIST_SECONDS)
                    continue
                await self.compare(kind)
                self.synced.add(kind)
                self.publish()
                self.errors.ok(("watch", kind), label)
                backoff.reset()
                while True:
                    version = await self._watch_once(kind, version)
            except ApiException as exc:
                self.synced.discard(kind)
                self.publish()
                if exc.status == 410:
                    log.info("%s: resourceVersion expired, listing again", label)
                    continue
                self.errors.failed(("watch", kind), label, describe(exc))
            except KUBE_ERRORS as exc:
                self.synced.discard(kind)
                self.publish()
                self.errors.failed(("watch", kind), label, describe(exc))
            await asyncio.sleep(backoff.next_delay())
