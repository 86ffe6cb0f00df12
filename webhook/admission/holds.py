"""Holds as admission sees them: ``modelpin.io/hold`` and ``modelpin.io/paused`` (DESIGN.md section 6a).

A hold is a user's decision, so it is read from the object as sent, on CREATE and
UPDATE alike. What it may keep is another matter: only a record the stored object
holds too (decision.py's trust rule).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HOLD, Hold, parse_hold

# MLflow version numbers are positive integers; a longer "number" is damage, not a version.
MAX_VERSION_DIGITS = 18


@dataclass(frozen=True, slots=True)
class Holding:
    """The hold on one object at one moment."""

    hold: Hold | None = None  # the hold annotation, read (active or not)
    paused: bool = False  # modelpin.io/paused: "true", a hold without reason or expiry
    active: bool = False  # whether fields are held now
    problem: str | None = None  # why a damaged hold annotation was ignored
    # pointer -> version, from a hold in force (an expired hold's are not, even while paused)
    pins: Mapping[str, str] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        """Whether the object carries a hold at all, expired or not."""
        return self.paused or self.hold is not None

    @property
    def expiry(self) -> dt.datetime | None:
        """When the hold ends; None while it lasts until released."""
        return None if self.paused or self.hold is None else self.hold.expiry

    def version_for(self, pointer: str) -> str | None:
        """The version an active hold names for ``pointer``, if it names one."""
        return self.pins.get(pointer)


# No hold: most objects, most of the time (shared: a Holding is never changed).
NOT_HELD: Final = Holding()


def read(obj: Mapping[str, Any] | None, now: dt.datetime) -> Holding:
    annotations = records.annotations_of(obj)
    raw = annotations.get(HOLD)
    paused = annotations.get(records.PAUSED) == "true"
    if raw is None and not paused:
        return NOT_HELD
    hold, problem = parse_hold(raw)
    in_force = hold is not None and hold.active(now)
    pins = hold.versions if hold is not None and in_force else {}
    return Holding(hold, paused, paused or in_force, problem, pins)


def bad_version(version: str) -> str | None:
    """Why ``version`` (from a hold's ``versions``) cannot be looked up, if so."""
    if version.isascii() and version.isdigit() and len(version) <= MAX_VERSION_DIGITS:
        return None
    shown = repr(version[:40]) + ("..." if len(version) > 40 else "")
    return f"{HOLD} names version {shown}, which is not a version number"
