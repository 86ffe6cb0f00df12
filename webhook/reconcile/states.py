"""The state of one template field, as ``modelpin status`` and the reconciler's gauges both name it.

First match wins: paused > rolled-back > held > rolling-out > pinned > unresolvable
> gated > behind > current (DESIGN.md section 6a). A rolled-back field is one held
at its old version after its rollout's analysis failed; a rolling-out field runs
the old and the new version side by side. Pure: what the registry names is passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from webhook.registry.clients import ModelVersion
from webhook.templating import record_annotations
from webhook.templating.rollout_annotations import Hold
from webhook.templating.rollout_policy import SPLITTING, Phase, State

STATES = ("paused", "rolled-back", "held", "rolling-out", "pinned", "unresolvable", "gated", "behind", "current")


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the registry names now for one reference, or why it names nothing."""

    version: ModelVersion | None
    problem: str = ""


def decide(
    *,
    paused: bool,
    hold: Hold | None,
    now: dt.datetime,
    pinned: bool,
    lookup: Lookup,
    missing_tags: Sequence[str],
    running_version: str,
    rollout: State | None = None,
) -> tuple[str, str | None, str | None]:
    """The field's state, with its reason and expiry where it has them.

    ``rollout``: the object's rollout state, passed only for the fields it covers.
    """
    if paused:
        return "paused", f"{record_annotations.PAUSED}=true", None
    active_hold = hold is not None and hold.active(now)
    if active_hold and hold is not None and rollout is not None and rollout.phase is Phase.ROLLED_BACK:
        return "rolled-back", rollout.reason, hold.until
    if active_hold and hold is not None:
        return "held", hold.reason, hold.until
    if rollout is not None and rollout.phase in SPLITTING:
        return "rolling-out", rolling_out(rollout), None
    if pinned:
        return "pinned", None, None
    if lookup.version is None:
        return "unresolvable", lookup.problem, None
    if missing_tags:
        return "gated", f"version {lookup.version.version} lacks {', '.join(missing_tags)}", None
    if lookup.version.version != running_version:
        return "behind", None, None
    return "current", None, None


def missing_tags(version: ModelVersion | None, required: Mapping[str, str] | None) -> list[str]:
    """``key=value`` for each tag the namespace policy requires and the version does not carry."""
    if version is None or not required:
        return []
    return [f"{k}={v}" for k, v in sorted(required.items()) if version.tags.get(k) != v]


def rolling_out(state: State) -> str:
    """``10 % on version 4`` (``, paused: ...`` when paused): what status says of a rollout under way."""
    versions = ", ".join(sorted({r.get("version", "?") for r in state.to.values()})) or "?"
    said = f"{state.percent} % on version {versions}"
    return f"{said}, {state.reason}" if state.phase is Phase.PAUSED and state.reason else said
