"""Progressive rollouts carried out: the step logic of ``rollouts`` applied to objects with a rollout policy.

The compare hands an object with a policy (the namespace's ``rollout`` setting
or the object's ``modelpin.io/rollout-policy``) to ``moved`` instead of touching
it: the new version starts on the policy's first step. From there a timer per
progressing object calls ``advance`` when the step's time is served, running
the analysis first when the policy has one. Operators' commands arrive as
``modelpin.io/rollout-command`` (``modelpin rollout``) and are carried out here,
so the reconciler stays the only writer of ``modelpin.io/rollout``.

Every action is one merge patch of annotations, made as the reconciler: the
state, the refresh token when the split changes (the webhook, the only writer
of spec, re-admits the object and writes the split from the state), and a hold
at the old versions after a rollback or an abort. Timers live only while this
replica leads: ``follow`` is one of the leader's work tasks and cancels them as
it ends. A new term finds progressing rollouts in the index and times them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from webhook.config import Settings
from webhook.metrics import ROLLOUT_PHASE, ROLLOUT_RESULTS
from webhook.reconcile import analysis, rollouts
from webhook.reconcile.events import Events
from webhook.reconcile.index import Index, Key, Rollout, Tracked
from webhook.reconcile.kube import KUBE_ERRORS, Kube, describe
from webhook.reconcile.loops import Backoff, Once, cancel_tasks
from webhook.registry.clients import ModelVersion
from webhook.registry.resolver import Plan, now_ms
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HOLD, Hold, dump_hold, format_time, parse_time
from webhook.templating.rollout_policy import (
    ROLLOUT,
    SPLITTING,
    Phase,
    Policy,
    Record,
    State,
    dump_state,
    parse_policy,
)

log = logging.getLogger("modelpin.reconciler")

# The hold's ``by`` after a rollback or abort (the reconciler writes it; the Event says why).
HOLDER = "modelpin-reconciler"
SCAN_SECONDS = 1.0  # the longest a command or a newly progressing rollout waits to be seen
REFUSAL_EVENT_SECONDS = 60.0  # a refused command older than this (seen again after a restart) says nothing
RESULT_OF = {
    "RolloutPromoted": "promoted",
    "RolloutRolledBack": "rolled-back",
    "RolloutAborted": "aborted",
}


def record(p: Plan, version: ModelVersion, uri: str) -> Record:
    """The record the webhook writes for this resolution (``modelpin.io/resolved``'s shape)."""
    return {
        "registry": p.registry,
        "model": p.reference.name,
        "selector": str(p.reference.selector),
        "version": version.version,
        "run_id": version.run_id,
        "uri": uri,
    }


@dataclass(slots=True)
class RolloutDriver:
    kube: Kube
    index: Index
    events: Events
    settings: Settings
    errors: Once
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    retry_cap: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None  # the analysis client's; tests give their own
    timers: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    _seen_requests: set[str] = field(default_factory=set)

    # --- what governs an object ------------------------------------------------------------------

    def _rollout(self, key: Key) -> Rollout | None:
        # the index's latest, not the caller's copy: a compare's Tracked may predate a newer event
        t = self.index.get(key)
        return t.rollout if t is not None else None

    def policy(self, t: Tracked) -> Policy | None:
        rollout = self._rollout(t.key)
        if rollout is not None and rollout.policy is not None:
            return rollout.policy
        # the namespace's ``rollout`` setting; read defensively, as a Policy or as the raw value
        raw = getattr(self.settings.policy(t.namespace), "rollout", None)
        if raw is None or isinstance(raw, Policy):
            return raw
        policy, _ = parse_policy(raw, source=f"namespaces.{t.namespace}.rollout")
        return policy

    def state(self, key: Key) -> State | None:
        rollout = self._rollout(key)
        return rollout.state if rollout is not None else None

    def governs(self, t: Tracked) -> bool:
        """Whether registry moves of ``t`` go through a rollout rather than a plain touch."""
        state = self.state(t.key)
        return self.policy(t) is not None or (state is not None and state.phase in SPLITTING)

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # --- the compare's hand-off --------------------------------------------------------------------

    async def moved(self, t: Tracked, new: Mapping[str, Record]) -> bool:
        """The registry names ``new`` for fields of ``t``: start, redirect or end its rollout. True if written."""
        async with self._lock(t.key):
            policy = self.policy(t)
            state = self.state(t.key)
            if policy is None:
                return False  # a rollout whose policy was removed: left where it stands
            old = {r.pointer: dict(r.record) for r in t.refs if r.pointer in new}
            step = rollouts.start(state, old, new, policy, self.clock())
            return await self._act(t, step)

    # --- acting on a step --------------------------------------------------------------------------

    async def _act(self, t: Tracked, step: rollouts.Step) -> bool:
        """Write what ``step`` says as one annotations patch, then its Events; False if the write failed."""
        now = self.clock()
        changes: dict[str, str] = {}
        if step.write and step.state is not None:
            changes[ROLLOUT] = dump_state(step.state)
        if step.hold is not None:
            held = Hold(step.hold.reason, format_time(now), None, HOLDER, dict(step.hold.versions))
            changes[HOLD] = dump_hold(held)
        if step.touch:
            changes[records.REFRESH] = str(now_ms() + 1)
        if changes:
            try:
                answer = await self.kube.merge_patch(
                    t.kind, t.namespace, t.name, {"metadata": {"annotations": changes}}
                )
            except KUBE_ERRORS as exc:
                self.errors.failed(("rollout", t.key), f"rollout of {t.describe()}", describe(exc))
                return False
            self.errors.ok(("rollout", t.key), f"rollout of {t.describe()}")
            self.index.wrote(t.key, step.state, answer)
            log.info("%s: rollout %s", t.describe(), step.state.phase if step.state else "written")
        for event in step.events:
            await self.events.record(t, event.type, event.reason, event.message[:1000])
            result = RESULT_OF.get(event.reason)
            if event.reason == "RolloutPaused" and event.type == "Warning":
                result = "paused-unreachable"  # only analysis that cannot run pauses with a Warning
            if result is not None:
                ROLLOUT_RESULTS[result].inc()
        self.publish()
        return bool(changes)

    # --- the timers ---------------------------------------------------------------------------------

    async def advance(self, key: Key) -> rollouts.Step | None:
        """One look at a progressing rollout: wait, analyse, step up, promote or roll back. None: nothing to do."""
        async with self._lock(key):
            t = self.index.get(key)
            state = self.state(key)
            if t is None or state is None or state.phase is not Phase.PROGRESSING:
                return None
            policy = self.policy(t)
            if policy is None:
                return None
            step = rollouts.advance(state, policy, self.clock())
            if step.analyse and policy.analysis is not None:
                outcome = await self._analyse(t, state, policy)
                step = rollouts.advance(state, policy, self.clock(), outcome)
            if not await self._act(t, step) and (step.write or step.touch):
                raise _WriteFailed
            return step

    async def _analyse(self, t: Tracked, state: State, policy: Policy) -> analysis.Outcome:
        assert policy.analysis is not None
        to = sorted(state.to.values(), key=lambda r: r.get("model", ""))
        labels = {
            "namespace": t.namespace,
            "name": t.name,
            "model": to[0].get("model", "") if to else "",
            "version": to[0].get("version", "") if to else "",
        }
        ca: Path | None = getattr(self.settings, "rollout_prometheus_ca", None)
        verify: str | bool = str(ca) if ca else True
        async with analysis.client(policy.analysis.timeout_seconds, self.transport, verify) as http:
            outcome = await analysis.analyse(policy.analysis, labels, state.percent, http)
        log.info("%s: analysis at %d %%: %s %s", t.describe(), state.percent, outcome.verdict, outcome.reason)
        return outcome

    async def _time(self, key: Key) -> None:
        """The object's timer: look again when its step is due, until the rollout stops progressing."""
        backoff = Backoff(1.0, self.retry_cap)
        try:
            while True:
                try:
                    step = await self.advance(key)
                except _WriteFailed:
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                if step is None:
                    return
                if step.due is not None:
                    await asyncio.sleep(max(0.0, (step.due - self.clock()).total_seconds()))
                elif not step.write:
                    return
        finally:
            if self.timers.get(key) is asyncio.current_task():
                del self.timers[key]

    def _start_timers(self) -> None:
        for t in self.index.rolling():
            state = t.rollout.state if t.rollout is not None else None
            if state is not None and state.phase is Phase.PROGRESSING and t.key not in self.timers:
                self.timers[t.key] = asyncio.create_task(self._time(t.key), name=f"rollout {t.namespace}/{t.name}")

    # --- operators' commands ------------------------------------------------------------------------

    async def _carry_out(self) -> None:
        for t in self.index.rolling():
            if t.rollout is None:
                continue
            request, key = t.rollout.request, t.key
            if request is None or request.id in self._seen_requests:
                continue
            self._seen_requests.add(request.id)
            if not request.applies_to(t.rollout.state):
                continue
            async with self._lock(key):
                step = rollouts.command(self.state(key), request.command, self.clock(), request.by)
                if step.refused is not None:
                    age = (self.clock() - parse_time(request.at)).total_seconds()
                    if age < REFUSAL_EVENT_SECONDS:
                        await self.events.record(t, "Warning", "RolloutCommandRefused", step.refused)
                    continue
                if not await self._act(t, step):
                    self._seen_requests.discard(request.id)  # the write failed: try again next scan

    # --- the leader's work task ---------------------------------------------------------------------

    async def follow(self) -> None:
        """While leading: carry out commands and time progressing rollouts; their timers end with this task."""
        try:
            while True:
                self.index.changed.clear()
                await self._carry_out()
                self._start_timers()
                self.publish()
                # asyncio.timeout, not wait_for: a cancelled term ends this task at once
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SCAN_SECONDS):
                        await self.index.changed.wait()
        finally:
            await cancel_tasks(list(self.timers.values()))
            self.timers.clear()
            self._seen_requests.clear()

    def publish(self) -> None:
        counts = dict.fromkeys(ROLLOUT_PHASE, 0)
        for t in self.index.rolling():
            if t.rollout is not None and t.rollout.state is not None:
                phase = t.rollout.state.phase.value
                counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            ROLLOUT_PHASE[phase].set(n)


class _WriteFailed(Exception):
    """A step's write did not reach the apiserver: the timer tries again after a backoff."""
