"""Field states under a rollout: rolling-out while split, rolled-back while its hold keeps the old version."""

from __future__ import annotations

import datetime as dt
from typing import Any

from webhook.reconcile.states import STATES, Lookup, decide, rolling_out
from webhook.registry.clients import ModelVersion
from webhook.templating.rollout_annotations import Hold
from webhook.templating.rollout_policy import State

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
V4 = ModelVersion("iris", "4", "READY", "None", "s3://m/4", "r4")
FIELD = "/spec/predictor/model/storageUri"
HELD = Hold("rollout of version 4 rolled-back: ...", since="2026-03-01T11:00:00Z", versions={FIELD: "3"})


def rollout(phase: str, percent: int = 10, reason: str = "") -> State:
    return State.model_validate(
        {
            "phase": phase,
            "percent": percent,
            "from": {FIELD: {"uri": "s3://m/3", "version": "3"}},
            "to": {FIELD: {"uri": "s3://m/4", "version": "4"}},
            "started": "2026-03-01T11:00:00Z",
            "step_started": "2026-03-01T11:00:00Z",
            "reason": reason,
        }
    )


def decided(**changes: Any) -> tuple[str, str | None, str | None]:
    values: dict[str, Any] = {
        "paused": False,
        "hold": None,
        "now": NOW,
        "pinned": False,
        "lookup": Lookup(V4),
        "missing_tags": [],
        "running_version": "3",
    }
    values.update(changes)
    return decide(**values)


def test_a_split_field_is_rolling_out_with_its_share() -> None:
    assert decided(rollout=rollout("progressing")) == ("rolling-out", "10 % on version 4", None)
    paused = rollout("paused", 50, "analysis could not run: Prometheus unreachable")
    assert decided(rollout=paused)[:2] == (
        "rolling-out",
        "50 % on version 4, analysis could not run: Prometheus unreachable",
    )
    assert decided(rollout=rollout("progressing"), paused=True)[0] == "paused"


def test_a_rolled_back_field_says_why_while_its_hold_lasts() -> None:
    back = rollout("rolled-back", 0, "analysis failed: error-rate 0.2 > 0.01 at 10 %")
    assert decided(rollout=back, hold=HELD) == ("rolled-back", "analysis failed: error-rate 0.2 > 0.01 at 10 %", None)
    assert decided(rollout=back) == ("behind", None, None)  # released: the registry's version is ahead again
    aborted = rollout("aborted", 0, "aborted by alice")
    assert decided(rollout=aborted, hold=HELD)[:2] == ("held", HELD.reason)


def test_an_ended_rollout_is_not_rolling_out() -> None:
    assert decided(rollout=rollout("promoted", 100), running_version="4")[0] == "current"


def test_the_states_in_precedence_order() -> None:
    assert STATES.index("paused") < STATES.index("rolled-back") < STATES.index("held") < STATES.index("rolling-out")
    assert rolling_out(rollout("progressing", 50)) == "50 % on version 4"
