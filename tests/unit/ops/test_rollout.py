"""``modelpin rollout``: commands checked against the stored state, written as requests, awaited."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

import orjson
import pytest

from webhook.cli import main
from webhook.ops import rollout
from webhook.ops.kinds import parse_target
from webhook.reconcile.rollouts import COMMAND, Command, parse_request
from webhook.templating.rollout_policy import ROLLOUT, Phase, parse_state

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
FIELD = "/spec/predictor/model/storageUri"
NAMED, _ = parse_target("isvc/iris")


def state(phase: str = "progressing", percent: int = 10, reason: str = "") -> str:
    return orjson.dumps(
        {
            "phase": phase,
            "step": 0,
            "percent": percent,
            "from": {FIELD: {"uri": "s3://iris/3", "version": "3"}},
            "to": {FIELD: {"uri": "s3://iris/4", "version": "4"}},
            "started": "2026-03-01T11:00:00Z",
            "step_started": "2026-03-01T11:00:00Z",
            "reason": reason,
        }
    ).decode()


def stored(rollout_state: str | None) -> dict[str, Any]:
    annotations = {} if rollout_state is None else {ROLLOUT: rollout_state}
    return {"metadata": {"name": "iris", "namespace": "prod", "annotations": annotations}}


class Apiserver:
    """get and merge_patch of one stored object; ``then`` is what the reconciler writes after the request."""

    timeout = 5.0

    def __init__(self, obj: dict[str, Any], then: str | None = None) -> None:
        self.obj = obj
        self.then = then
        self.patches: list[dict[str, Any]] = []

    @property
    def custom(self) -> Apiserver:
        return self

    async def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.patches and self.then is not None:
            self.obj["metadata"]["annotations"][ROLLOUT] = self.then
        return copy.deepcopy(self.obj)

    async def merge_patch(self, kind: Any, namespace: str, name: str, patch: dict[str, Any], **kw: Any) -> None:
        self.patches.append(patch)
        self.obj["metadata"]["annotations"].update(patch["metadata"]["annotations"])


@pytest.mark.parametrize(
    ("current", "cmd", "refusal"),
    [
        (None, Command.PROMOTE, "iris in prod: cannot promote: no rollout"),
        (state("promoted", 100), Command.ABORT, "iris in prod: cannot abort: the rollout is promoted"),
        (state("paused"), Command.PAUSE, "iris in prod: cannot pause: the rollout is paused already"),
        (state(), Command.RESUME, "iris in prod: cannot resume: the rollout is progressing"),
        ("{", Command.PAUSE, "iris in prod: ignored annotation modelpin.io/rollout: not JSON"),
    ],
)
async def test_a_command_that_would_be_refused_writes_nothing(current: str | None, cmd: Command, refusal: str) -> None:
    api = Apiserver(stored(current))
    with pytest.raises(rollout.RolloutError) as err:
        await rollout.request(api, NAMED, "prod", "iris", cmd, by="alice", now=NOW)  # type: ignore[arg-type]
    assert str(err.value) == refusal
    assert api.patches == []


async def test_a_command_is_written_as_a_request_and_its_result_awaited() -> None:
    api = Apiserver(stored(state()), then=state("paused", reason="paused by alice"))
    asked = await rollout.request(api, NAMED, "prod", "iris", Command.PAUSE, by="alice", now=NOW)  # type: ignore[arg-type]
    (patch,) = api.patches
    request, problem = parse_request(patch["metadata"]["annotations"][COMMAND])
    assert problem is None and request is not None
    assert (request.command, request.by, request.at) == (Command.PAUSE, "alice", "2026-03-01T12:00:00Z")
    assert request == asked.request and len(request.id) == 32
    done = await rollout.carried_out(api, NAMED, "prod", "iris", asked, 1.0)  # type: ignore[arg-type]
    assert done is not None and done.phase is Phase.PAUSED
    assert rollout.describe(NAMED, "prod", "iris", done) == (
        "rollout of inferenceservice/iris in prod to version 4: paused at 10 % (paused by alice)"
    )


async def test_waiting_ends_without_a_state_when_the_reconciler_does_not_act() -> None:
    api = Apiserver(stored(state()))
    asked = await rollout.request(api, NAMED, "prod", "iris", Command.PROMOTE, by="alice", now=NOW)  # type: ignore[arg-type]
    started = asyncio.get_running_loop().time()
    assert await rollout.carried_out(api, NAMED, "prod", "iris", asked, 0.6) is None  # type: ignore[arg-type]
    assert 0.6 <= asyncio.get_running_loop().time() - started < 2.0


def test_the_state_a_command_leads_to() -> None:
    after = rollout.check(stored(state()), Command.PROMOTE, NOW, "alice")
    assert after is not None and (after.phase, after.percent, after.reason) == (
        Phase.PROMOTED,
        100,
        "promoted by alice",
    )
    parsed, _ = parse_state(state())
    assert parsed is not None


def test_the_cli_refuses_an_unknown_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["rollout", "launch", "isvc/iris"])
    assert exit_.value.code == 2
    assert "invalid choice: 'launch'" in capsys.readouterr().err
