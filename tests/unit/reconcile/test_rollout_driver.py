"""The rollout driver: the compare's hand-off, the timers, analysis, commands, and what it writes."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import orjson
import pytest

from tests.support.fakes import FakeRegistry
from tests.unit.reconcile.conftest import KIND, FakeKube, load, managed
from webhook.metrics import ROLLOUT_PHASE, ROLLOUT_RESULTS
from webhook.reconcile.reconciler import Reconciler
from webhook.reconcile.rollout_driver import HOLDER
from webhook.reconcile.rollouts import COMMAND, Command, Request, dump_request
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HOLD, format_time, parse_hold
from webhook.templating.rollout_policy import ROLLOUT, ROLLOUT_POLICY, Phase, State, dump_state, parse_state

FIELD = "/spec/predictor/model/storageUri"
TIMED = '{"rollout": {"steps": [10, 50], "step_seconds": 0}}'
ANALYSED = orjson.dumps(
    {
        "rollout": {
            "steps": [10, 50],
            "step_seconds": 0,
            "analysis": {
                "prometheus": "http://prometheus:9090",
                "queries": [{"name": "error-rate", "query": 'errors{version="{{version}}"}', "max": 0.01}],
            },
        }
    }
).decode()


class Prometheus:
    """Prometheus's /api/v1/query answering one value, or refusing connections."""

    def __init__(self) -> None:
        self.value: float | None = 0.001
        self.down = False
        self.queries: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.queries.append(dict(httpx.QueryParams(request.content.decode()))["query"])
        result = [] if self.value is None else [{"metric": {}, "value": [0, str(self.value)]}]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.fixture
def prometheus(reconciler: Reconciler) -> Prometheus:
    server = Prometheus()
    reconciler.rollouts.transport = httpx.MockTransport(server.handle)
    return server


async def with_policy(live: Resolver, name: str, policy: str) -> dict[str, Any]:
    obj = await managed(live, name, "models:/fraud@champion")
    obj["metadata"]["annotations"][ROLLOUT_POLICY] = policy
    return obj


def skip(reconciler: Reconciler, seconds: float) -> None:
    """The driver's clock moved on by ``seconds`` more (steps are timed from whole seconds, rounded up)."""
    clock = reconciler.rollouts.clock
    reconciler.rollouts.clock = lambda: clock() + dt.timedelta(seconds=seconds)


def written(kube: FakeKube, name: str) -> list[dict[str, str]]:
    return [p["metadata"]["annotations"] for n, p in kube.patches if n == name]


def state_of(reconciler: Reconciler, name: str) -> State:
    state = reconciler.rollouts.state((KIND, "team", name))
    assert state is not None
    return state


async def test_a_move_of_an_object_with_a_policy_starts_a_rollout_instead_of_a_touch(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(
        reconciler.index,
        [await with_policy(live, "canaried", TIMED), await managed(live, "plain", "models:/fraud@champion")],
    )
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare({"fraud"}) == 2
    (plain,) = written(kube, "plain")
    assert set(plain) == {records.REFRESH}  # the object without a policy moves at once
    (first,) = written(kube, "canaried")
    assert set(first) == {ROLLOUT, records.REFRESH}  # the state, and a refresh so the webhook writes the split
    state, problem = parse_state(first[ROLLOUT])
    assert problem is None and state is not None
    assert (state.phase, state.percent) == (Phase.PROGRESSING, 10)
    assert state.from_[FIELD]["version"] == "2" and state.to[FIELD]["version"] == "3"
    assert state.to[FIELD]["uri"].endswith("/r3/artifacts/model") and state.to[FIELD]["selector"] == "@champion"
    assert [e[2] for e in kube.events if e[0] == "canaried"] == ["RolloutStarted"]
    # the next compare finds the same move: the rollout under way is left as it is
    assert await reconciler.compare({"fraud"}) == 1
    assert len(written(kube, "canaried")) == 1


async def test_steps_are_served_then_promoted(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(reconciler.index, [await with_policy(live, "canaried", TIMED)])
    registry.set_alias("fraud", "champion", 3)
    await reconciler.compare({"fraud"})
    key = (KIND, "team", "canaried")
    promoted = ROLLOUT_RESULTS["promoted"]._value.get()
    step = await reconciler.rollouts.advance(key)
    assert step is not None and step.due is not None  # within the second it began: not yet served
    skip(reconciler, 1.01)
    step = await reconciler.rollouts.advance(key)
    assert step is not None and state_of(reconciler, "canaried").percent == 50
    skip(reconciler, 1.01)
    step = await reconciler.rollouts.advance(key)
    assert step is not None and state_of(reconciler, "canaried").phase is Phase.PROMOTED
    assert await reconciler.rollouts.advance(key) is None  # over: nothing more to time
    assert [e[2] for e in kube.events] == ["RolloutStarted", "RolloutStepped", "RolloutPromoted"]
    assert all(records.REFRESH in a for a in written(kube, "canaried"))
    assert ROLLOUT_RESULTS["promoted"]._value.get() == promoted + 1
    assert ROLLOUT_PHASE["promoted"]._value.get() >= 1


async def test_a_step_is_held_for_its_time(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(reconciler.index, [await with_policy(live, "slow", '{"steps": [10], "step_seconds": 300}')])
    registry.set_alias("fraud", "champion", 3)
    await reconciler.compare({"fraud"})
    step = await reconciler.rollouts.advance((KIND, "team", "slow"))
    assert step is not None and step.due is not None and not step.write
    assert 300 <= (step.due - dt.datetime.now(dt.UTC)).total_seconds() <= 301
    assert len(written(kube, "slow")) == 1


async def test_failing_analysis_rolls_back_and_holds_the_old_version(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, prometheus: Prometheus
) -> None:
    load(reconciler.index, [await with_policy(live, "canaried", ANALYSED)])
    registry.set_alias("fraud", "champion", 3)
    await reconciler.compare({"fraud"})
    prometheus.value = 0.2
    skip(reconciler, 1.01)
    await reconciler.rollouts.advance((KIND, "team", "canaried"))
    assert prometheus.queries == ['errors{version="3"}']  # the new version's, escaped into the query
    last = written(kube, "canaried")[-1]
    assert set(last) == {ROLLOUT, HOLD, records.REFRESH}
    hold, _ = parse_hold(last[HOLD])
    assert hold is not None and hold.by == HOLDER and hold.versions == {FIELD: "2"}
    assert "error-rate 0.2 > 0.01 at 10 %" in hold.reason
    assert state_of(reconciler, "canaried").phase is Phase.ROLLED_BACK
    _, kind, reason, message = kube.events[-1]
    assert (kind, reason) == ("Warning", "RolloutRolledBack") and "error-rate 0.2 > 0.01" in message


async def test_unreachable_analysis_pauses_without_deciding(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, prometheus: Prometheus
) -> None:
    load(reconciler.index, [await with_policy(live, "canaried", ANALYSED)])
    registry.set_alias("fraud", "champion", 3)
    await reconciler.compare({"fraud"})
    prometheus.down = True
    paused = ROLLOUT_RESULTS["paused-unreachable"]._value.get()
    skip(reconciler, 1.01)
    await reconciler.rollouts.advance((KIND, "team", "canaried"))
    state = state_of(reconciler, "canaried")
    assert (state.phase, state.percent) == (Phase.PAUSED, 10)
    last = written(kube, "canaried")[-1]
    assert set(last) == {ROLLOUT}  # no hold, no refresh: the split stays as it is
    assert kube.events[-1][1:3] == ("Warning", "RolloutPaused")
    assert ROLLOUT_RESULTS["paused-unreachable"]._value.get() == paused + 1
    assert await reconciler.rollouts.advance((KIND, "team", "canaried")) is None  # paused: the timer stops


async def test_a_failed_write_is_retried_by_the_timer(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    load(reconciler.index, [await with_policy(live, "canaried", TIMED)])
    registry.set_alias("fraud", "champion", 3)
    await reconciler.compare({"fraud"})
    reconciler.rollouts.retry_cap = 0.05
    kube.failures.append(ApiException(status=500, reason="etcd"))
    key = (KIND, "team", "canaried")
    skip(reconciler, 1.01)
    timer = asyncio.create_task(reconciler.rollouts._time(key))
    await asyncio.wait_for(timer, 5)
    assert state_of(reconciler, "canaried").phase is Phase.PROMOTED
    assert kube.attempts == 4  # start, a refused step, the step again, promotion


# --- commands ---------------------------------------------------------------------------------------


def ask(obj: dict[str, Any], cmd: Command, at: dt.datetime, ident: str = "r1") -> dict[str, Any]:
    obj["metadata"]["annotations"][COMMAND] = dump_request(Request(cmd, "alice", format_time(at), ident))
    return obj


async def running(reconciler: Reconciler, live: Resolver, registry: FakeRegistry, name: str) -> dict[str, Any]:
    """An object whose rollout has started, as stored with its state."""
    obj = await with_policy(live, name, '{"steps": [10], "step_seconds": 3600}')
    load(reconciler.index, [obj])
    registry.set_alias("fraud", "champion", 3)
    await reconciler.compare({"fraud"})
    obj["metadata"]["annotations"][ROLLOUT] = dump_state(state_of(reconciler, name))
    return obj


async def follow_once(reconciler: Reconciler) -> None:
    task = asyncio.create_task(reconciler.rollouts.follow())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_command_is_carried_out_once(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    obj = await running(reconciler, live, registry, "canaried")
    load(reconciler.index, [ask(obj, Command.ABORT, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))])
    await follow_once(reconciler)
    state = state_of(reconciler, "canaried")
    assert state.phase is Phase.ABORTED and state.reason == "aborted by alice"
    hold, _ = parse_hold(written(kube, "canaried")[-1][HOLD])
    assert hold is not None and hold.versions == {FIELD: "2"}
    assert kube.events[-1][2] == "RolloutAborted"
    patches = len(kube.patches)
    await follow_once(reconciler)  # seen again (the reconciler cannot remove it): not carried out twice
    assert len(kube.patches) == patches


async def test_a_command_from_before_the_rollout_is_not_carried_out(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    obj = await running(reconciler, live, registry, "canaried")
    load(reconciler.index, [ask(obj, Command.PAUSE, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))])
    patches = len(kube.patches)
    await follow_once(reconciler)
    assert state_of(reconciler, "canaried").phase is Phase.PROGRESSING
    assert len(kube.patches) == patches


async def test_a_refused_command_is_said_in_an_event(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    obj = await running(reconciler, live, registry, "canaried")
    load(reconciler.index, [ask(obj, Command.RESUME, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))])
    await follow_once(reconciler)
    assert kube.events[-1][1:] == ("Warning", "RolloutCommandRefused", "cannot resume: the rollout is progressing")


async def test_follow_times_progressing_rollouts_and_stops_their_timers_when_it_ends(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry
) -> None:
    await running(reconciler, live, registry, "canaried")
    task = asyncio.create_task(reconciler.rollouts.follow())
    await asyncio.sleep(0.05)
    timers = list(reconciler.rollouts.timers.values())
    assert len(timers) == 1 and not timers[0].done()  # waiting out its hour
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timers[0].cancelled() and not reconciler.rollouts.timers


async def test_a_step_begun_mid_second_is_timed_from_the_next_second(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry
) -> None:
    # the annotation keeps whole seconds: rounding down would cut a step short by up to one
    load(reconciler.index, [await with_policy(live, "slow", '{"steps": [10], "step_seconds": 3}')])
    registry.set_alias("fraud", "champion", 3)
    begun = dt.datetime(2026, 1, 2, 3, 4, 5, 900_000, tzinfo=dt.UTC)
    reconciler.rollouts.clock = lambda: begun
    await reconciler.compare({"fraud"})
    assert state_of(reconciler, "slow").step_started == "2026-01-02T03:04:06Z"
    reconciler.rollouts.clock = lambda: begun + dt.timedelta(seconds=2.5)
    step = await reconciler.rollouts.advance((KIND, "team", "slow"))
    assert step is not None and step.due == dt.datetime(2026, 1, 2, 3, 4, 9, tzinfo=dt.UTC)
