"""``modelpin rollout pause|resume|promote|abort``: an operator's command to a rollout under way.

The reconciler is the only writer of ``modelpin.io/rollout`` (and the webhook
trusts a changed state only from it), so the command is a request: this module
checks it against the stored state with the same step logic the reconciler runs,
so a command that cannot be carried out is refused here and nothing is written,
then writes ``modelpin.io/rollout-command`` with the operator's credentials and
waits for the reconciler to write the state that carries it out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.ops import objects
from webhook.ops.kinds import Named
from webhook.reconcile.kube import Kube
from webhook.reconcile.rollouts import COMMAND, Command, Request, command, dump_request
from webhook.templating.record_annotations import annotations_of
from webhook.templating.rollout_annotations import format_time
from webhook.templating.rollout_policy import ROLLOUT, State, parse_state

WAIT_POLL_SECONDS = 0.5


class RolloutError(ValueError):
    """The command cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class Asked:
    request: Request
    before: str | None  # the state annotation as it was when the request was written


def _state_text(obj: Mapping[str, Any]) -> str | None:
    value = annotations_of(obj).get(ROLLOUT)
    return value if isinstance(value, str) else None


def check(obj: Mapping[str, Any], cmd: Command, now: dt.datetime, by: str) -> State | None:
    """The state the command would lead to; raises RolloutError when it would be refused."""
    meta = obj.get("metadata") or {}
    target = f"{meta.get('name')} in {meta.get('namespace')}"
    state, problem = parse_state(_state_text(obj))
    if problem is not None:
        raise RolloutError(f"{target}: {problem}")
    step = command(state, cmd, now, by)
    if step.refused is not None:
        raise RolloutError(f"{target}: {step.refused}")
    return step.state


async def request(
    kube: Kube, named: Named, namespace: str, name: str, cmd: Command, *, by: str, now: dt.datetime
) -> Asked:
    """Check the command against the stored state, then write the request for the reconciler."""
    obj = await objects.get(kube, named.kind, namespace, name)
    check(obj, cmd, now, by)
    made = Request(cmd, by, format_time(now), uuid.uuid4().hex)
    await objects.annotate(kube, named.kind, namespace, name, {COMMAND: dump_request(made)})
    return Asked(made, _state_text(obj))


async def carried_out(
    kube: Kube, named: Named, namespace: str, name: str, asked: Asked, wait_seconds: float
) -> State | None:
    """The state once the reconciler has written it after the request; None if not within ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        obj = await objects.get(kube, named.kind, namespace, name)
        text = _state_text(obj)
        if text is not None and text != asked.before:
            state, _ = parse_state(text)
            if state is not None:
                return state
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(WAIT_POLL_SECONDS)


def describe(named: Named, namespace: str, name: str, state: State) -> str:
    versions = ", ".join(sorted({r.get("version", "?") for r in state.to.values()}))
    said = f"rollout of {named.singular}/{name} in {namespace} to version {versions}: {state.phase}"
    if state.phase in ("progressing", "paused"):
        said += f" at {state.percent} %"
    return f"{said} ({state.reason})" if state.reason else said
