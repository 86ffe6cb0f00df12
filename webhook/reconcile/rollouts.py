"""A rollout's steps (pure): state, policy, clock and analysis verdict in; next state and actions out.

The reconciler performs the actions: it writes ``modelpin.io/rollout`` (and
touches the object, so the webhook re-admits it and writes the split), records
Events, and for a rollback or an abort writes a hold at the old versions, so
the alias that still names the new version does not start the rollout again.
The webhook records history entries when fields change; ``history`` says with
which cause.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import orjson

from webhook.reconcile.analysis import Outcome, Verdict
from webhook.templating.record_annotations import PREFIX, dumps
from webhook.templating.rollout_annotations import format_time, parse_time
from webhook.templating.rollout_policy import SPLITTING, Phase, Policy, Record, State

Records = Mapping[str, Record]

# An operator's command, written by ``modelpin rollout`` with the operator's credentials and
# carried out by the reconciler, the only writer of ``modelpin.io/rollout``.
COMMAND = PREFIX + "rollout-command"
MAX_COMMAND_BYTES = 1024


class Command(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class Request:
    """``modelpin.io/rollout-command``: what an operator asked for, by whom, when; ``id`` tells requests apart."""

    command: Command
    by: str
    at: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"command": str(self.command), "by": self.by, "at": self.at, "id": self.id}

    def applies_to(self, state: State | None) -> bool:
        """Asked during this rollout: a request left on the object from an earlier rollout is not carried out."""
        if state is None:
            return False
        try:
            # ``at`` is cut to the second and ``started`` rounded up to it: a request made in the second
            # the rollout started reads as up to a second before it
            return parse_time(self.at) >= parse_time(state.started) - dt.timedelta(seconds=1)
        except ValueError:
            return False


def dump_request(request: Request) -> str:
    return dumps(request.to_json())


def parse_request(raw: object) -> tuple[Request | None, str | None]:
    """The request, or None; the second value names what was wrong with a damaged annotation."""
    if raw is None or raw == "":
        return None, None
    if not isinstance(raw, str) or len(raw.encode()) > MAX_COMMAND_BYTES:
        return None, f"ignored annotation {COMMAND}: not a string of at most {MAX_COMMAND_BYTES} bytes"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, f"ignored annotation {COMMAND}: not JSON"
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("command", "by", "at", "id")):
        return None, f"ignored annotation {COMMAND}: command, by, at and id must be strings"
    try:
        cmd = Command(value["command"])
        parse_time(value["at"])
    except ValueError:
        known = ", ".join(c.value for c in Command)
        return None, f"ignored annotation {COMMAND}: command must be one of {known} and at an RFC 3339 time"
    return Request(cmd, value["by"], value["at"], value["id"]), None


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the object at ``versions`` (pointer -> version) with ``reason``, until released."""

    reason: str
    versions: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Step:
    state: State | None  # the state to write; unchanged (the same object) when nothing happens
    write: bool = False  # write modelpin.io/rollout
    touch: bool = False  # the split changed: the webhook must re-admit the object
    events: tuple[Event, ...] = ()
    hold: Hold | None = None
    history: str | None = None  # the cause the webhook records for the fields that change
    refused: str | None = None  # why a command was not carried out
    due: dt.datetime | None = None  # when to look again (the step's time is not served yet)
    analyse: bool = False  # the step's time is served and the policy has analysis: run it, then call advance


def _versions(records: Records) -> str:
    shown = sorted({r.get("version", "?") for r in records.values()})
    return ", ".join(shown) or "?"


def _model(records: Records) -> str:
    return ", ".join(sorted({r.get("model", "?") for r in records.values()})) or "?"


def start(
    state: State | None,
    old: Records,
    new: Records,
    policy: Policy,
    now: dt.datetime,
) -> Step:
    """The registry names ``new`` for fields running ``old``: begin (or redirect) a rollout.

    A version the namespace's required tags refuse never reaches here: the compare
    holds it back first (Warning ModelVersionGated).
    """
    active = state is not None and state.phase in SPLITTING
    if active and state is not None and _same(state.to, new):
        return Step(state)
    source = state.from_ if active and state is not None else dict(old)
    if _same(source, new):
        if not active or state is None:
            return Step(state)
        ended = _with(state, phase=Phase.ABORTED, percent=0, reason="the registry names the running version again")
        return Step(ended, True, True, (Event("Normal", "RolloutAborted", ended.reason),))
    when = _stamp(now)
    begun = State.model_validate(
        {
            "phase": Phase.PROGRESSING,
            "step": 0,
            "percent": policy.steps[0],
            "from": dict(source),
            "to": dict(new),
            "started": when,
            "step_started": when,
            "policy_hash": policy.digest,
        }
    )
    verb = "redirected" if active else "started"
    message = (
        f"rollout of {_model(new)} {verb}: version {_versions(new)} on {begun.percent} % of traffic, "
        f"version {_versions(source)} on the rest"
    )
    return Step(begun, True, True, (Event("Normal", "RolloutStarted", message),))


def advance(state: State, policy: Policy, now: dt.datetime, outcome: Outcome | None = None) -> Step:
    """Move a progressing rollout on once its step's time is served and its analysis (if any) passes."""
    if state.phase is not Phase.PROGRESSING:
        return Step(state)
    due = parse_time(state.step_started) + dt.timedelta(seconds=policy.step_seconds)
    if now < due:
        return Step(state, due=due)
    if policy.analysis is not None and outcome is None:
        return Step(state, analyse=True)
    verdict = outcome.verdict if outcome is not None else Verdict.PASS
    if verdict is Verdict.UNREACHABLE:
        reason = f"analysis could not run: {outcome.reason if outcome else ''}"
        paused = _with(state, phase=Phase.PAUSED, reason=reason)
        return Step(paused, True, events=(Event("Warning", "RolloutPaused", reason),))
    if verdict in (Verdict.FAIL, Verdict.NO_DATA):
        return _back(state, Phase.ROLLED_BACK, f"analysis failed: {outcome.reason if outcome else ''}", now)
    nxt = state.step + 1
    if nxt < len(policy.steps):
        moved = _with(state, step=nxt, percent=policy.steps[nxt], step_started=_stamp(now), reason="")
        message = f"rollout of {_model(state.to)}: version {_versions(state.to)} on {moved.percent} % of traffic"
        return Step(moved, True, True, (Event("Normal", "RolloutStepped", message),))
    return _promote(state, "every step passed", now)


def command(state: State | None, cmd: Command, now: dt.datetime, by: str = "") -> Step:
    """An operator's pause, resume, promote or abort."""
    who = f" by {by}" if by else ""
    if state is None or state.phase not in SPLITTING:
        shown = "no rollout" if state is None else f"the rollout is {state.phase}"
        return Step(state, refused=f"cannot {cmd}: {shown}")
    if cmd is Command.PAUSE:
        if state.phase is Phase.PAUSED:
            return Step(state, refused="cannot pause: the rollout is paused already")
        paused = _with(state, phase=Phase.PAUSED, reason=f"paused{who}")
        return Step(paused, True, events=(Event("Normal", "RolloutPaused", paused.reason),))
    if cmd is Command.RESUME:
        if state.phase is Phase.PROGRESSING:
            return Step(state, refused="cannot resume: the rollout is progressing")
        # The step's start is kept: time served before the pause counts, and analysis runs again first.
        resumed = _with(state, phase=Phase.PROGRESSING, reason=f"resumed{who}")
        return Step(resumed, True, events=(Event("Normal", "RolloutResumed", resumed.reason),))
    if cmd is Command.PROMOTE:
        return _promote(state, f"promoted{who}", now)
    return _back(state, Phase.ABORTED, f"aborted{who}", now)


def _promote(state: State, reason: str, now: dt.datetime) -> Step:
    done = _with(state, phase=Phase.PROMOTED, percent=100, step_started=_stamp(now), reason=reason)
    message = f"rollout of {_model(state.to)} promoted: version {_versions(state.to)} on all traffic ({reason})"
    return Step(done, True, True, (Event("Normal", "RolloutPromoted", message),), history="moved")


def _back(state: State, phase: Phase, reason: str, now: dt.datetime) -> Step:
    ended = _with(state, phase=phase, percent=0, step_started=_stamp(now), reason=reason)
    hold = Hold(
        f"rollout of version {_versions(state.to)} {phase}: {reason}",
        {pointer: record.get("version", "") for pointer, record in state.from_.items()},
    )
    kind = "RolloutRolledBack" if phase is Phase.ROLLED_BACK else "RolloutAborted"
    message = f"rollout of {_model(state.to)} {phase}: version {_versions(state.from_)} on all traffic ({reason})"
    return Step(ended, True, True, (Event("Warning", kind, message),), hold, history="rollback")


def _stamp(now: dt.datetime) -> str:
    """``now`` rounded up to the second the annotation keeps: a step timed from it lasts at least its time."""
    if now.microsecond:
        now += dt.timedelta(microseconds=1_000_000 - now.microsecond)
    return format_time(now)


def _same(a: Records, b: Records) -> bool:
    return {p: r.get("uri") for p, r in a.items()} == {p: r.get("uri") for p, r in b.items()}


def _with(state: State, **changes: object) -> State:
    return state.model_copy(update=changes)
