"""The fields of a rollout in force: kept on the stable record, and the traffic split written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.admission import traffic
from webhook.admission.holds import Holding
from webhook.admission.outcome import Outcome, show
from webhook.config import Settings
from webhook.registry.resolver import ResolutionError, Resolver
from webhook.templating import record_annotations as records
from webhook.templating.grammar import TemplateError, is_candidate, parse
from webhook.templating.rollout_annotations import HOLD
from webhook.templating.rollout_policy import ROLLOUT


def rollout_in_force(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    may_refresh: bool,
    holding: Holding,
    namespace: str | None,
    settings: Settings,
    out: Outcome,
) -> traffic.Rollout | None:
    """The rollout in force; None when there is none to split (a hold wins over a rollout)."""
    default = settings.policy(namespace).rollout
    rollout = traffic.read(obj, old, trusted=may_refresh, default=default, writers=settings.reconciler_usernames)
    out.warnings += rollout.warnings
    if rollout.set_back is not None:
        out.annotations[ROLLOUT] = rollout.set_back[0]
    if rollout.state is None or not rollout.state.splitting:
        return None
    if holding.active:
        out.warnings.append(f"the rollout's traffic split is not written while {HOLD} or {records.PAUSED} holds")
        return None
    return rollout


def pin_to_stable(
    pointer: str,
    value: str,
    rec: records.Records,
    pin: Mapping[str, str],
    namespace: str | None,
    resolver: Resolver,
    out: Outcome,
) -> bool:
    """Keep a field on its rollout's stable (``from``) record, if it still names that record's model.

    A field whose template now names another model (edited mid-rollout) is resolved as usual
    and left out of the split.
    """
    recorded = rec.templates.get(pointer) if rec.recorded_uri(pointer) == value else None
    text = value if is_candidate(value) else recorded
    if text is None:
        return False  # a literal the user wrote: an override, not part of the rollout
    try:
        p = resolver.plan(parse(text), namespace)
    except (TemplateError, ResolutionError):
        return False  # refused by the ordinary resolution, which says why
    if p.registry != pin.get("registry") or p.reference.name != pin.get("model"):
        out.warnings.append(f"{pointer}: left out of the rollout: its template {show(text)} names another model")
        return False
    out.values[pointer] = pin["uri"]
    out.templates[pointer] = text
    out.resolved[pointer] = dict(pin)
    out.results["recorded"] += 1
    return True


def write_split(
    kind: str,
    sent_spec: Mapping[str, Any],
    stripped: Mapping[str, Any],
    rollout: traffic.Rollout | None,
    pinned: list[str],
    out: Outcome,
) -> None:
    """Set ``out.spec`` when the spec as admitted differs from the one sent by more than field values."""
    state = rollout.state if rollout is not None else None
    if state is not None:
        # only the fields kept on their stable record get a canary side
        state = state.model_copy(update={"to": {p: r for p, r in state.to.items() if p in pinned}})
    if (state is None or not state.to) and stripped is sent_spec:
        return
    resolved = traffic.with_values(stripped, out.values)
    mode = rollout.mode if rollout is not None else "canary"
    result = traffic.split(kind, resolved, state if state is not None and state.to else None, mode)
    if result.problem is not None:
        out.warnings.append(f"the rollout's traffic split is not written: {result.problem}")
    out.spec = result.spec
