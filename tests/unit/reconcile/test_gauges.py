"""The state gauges: status's picture from the index and the last compare, with bounded label sets."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.support.fakes import FakeRegistry
from tests.unit.reconcile.conftest import FakeKube, load, managed
from webhook.reconcile.reconciler import Reconciler
from webhook.reconcile.states import STATES
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HOLD, Hold, dump_hold
from webhook.templating.rollout_policy import ROLLOUT, Phase, State, dump_state

FIELD = "/spec/predictor/model/storageUri"


def states() -> dict[str, float]:
    return {s: REGISTRY.get_sample_value("modelpin_objects", {"state": s}) or 0.0 for s in STATES}


def running(model: str, version: str) -> float | None:
    labels = {"registry": "mlflow", "model": model, "version": version}
    return REGISTRY.get_sample_value("modelpin_model_versions_running", labels)


async def test_the_gauges_count_fields_by_state_and_objects_by_version(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    reconciler.leading = True
    paused = await managed(live, "paused", "models:/fraud@champion")
    paused["metadata"]["annotations"][records.PAUSED] = "true"
    objs = [
        await managed(live, "a", "models:/fraud@champion"),
        await managed(live, "b", "models:/fraud@champion"),
        await managed(live, "pinned", "models:/fraud/1"),
        paused,
    ]
    load(reconciler.index, objs)
    reconciler.publish_states()  # nothing compared yet: only what needs no lookup is counted
    assert states() == dict.fromkeys(STATES, 0.0) | {"paused": 1.0, "pinned": 1.0}
    assert "fraud" in reconciler.poller.retry
    registry.set_alias("fraud", "champion", 3)
    # the touches pass; the watch never shows them re-admitted, so a and b stay behind
    assert await reconciler.compare() == 2
    assert states() == dict.fromkeys(STATES, 0.0) | {"paused": 1.0, "pinned": 1.0, "behind": 2.0}
    assert running("fraud", "2") == 3.0 and running("fraud", "1") == 1.0
    # the objects re-admitted at version 3, as the webhook writes them
    moved = [await managed(live, n, "models:/fraud@champion") for n in ("a", "b")]
    load(reconciler.index, [*moved, objs[2], paused])
    reconciler.publish_states()
    assert states() == dict.fromkeys(STATES, 0.0) | {"paused": 1.0, "pinned": 1.0, "current": 2.0}
    assert running("fraud", "3") == 2.0 and running("fraud", "2") == 1.0
    load(reconciler.index, [])
    reconciler.publish_states()
    assert running("fraud", "3") is None and running("fraud", "1") is None  # series dropped
    assert states() == dict.fromkeys(STATES, 0.0)
    await reconciler.touches.stop()


async def test_a_replica_that_stops_leading_exports_zeros(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry
) -> None:
    reconciler.leading = True
    load(reconciler.index, [await managed(live, "pinned", "models:/fraud/1")])
    reconciler.publish_states()
    assert states()["pinned"] == 1.0 and running("fraud", "1") == 1.0
    reconciler.gauges.clear()
    assert states() == dict.fromkeys(STATES, 0.0) and running("fraud", "1") is None


async def test_fields_under_a_rollout_count_as_rolling_out_or_rolled_back(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry
) -> None:
    reconciler.leading = True

    def under(obj: dict[str, object], phase: Phase, pointer: str = FIELD) -> dict[str, object]:
        old = {"version": "2", "uri": "s3://a/2"}
        state = State(
            phase=phase, percent=10, from_={pointer: old}, to={pointer: {"version": "3", "uri": "s3://a/3"}},
            started="2026-01-02T03:04:05Z", step_started="2026-01-02T03:04:05Z", reason="analysis failed",
        )  # fmt: skip
        obj["metadata"]["annotations"][ROLLOUT] = dump_state(state)  # type: ignore[index]
        return obj

    rolled_back = under(await managed(live, "back", "models:/fraud@champion"), Phase.ROLLED_BACK)
    hold = Hold("rolled back", "2026-01-02T03:04:05Z", by="modelpin-reconciler", versions={FIELD: "2"})
    rolled_back["metadata"]["annotations"][HOLD] = dump_hold(hold)  # type: ignore[index]
    objs = [
        under(await managed(live, "canaried", "models:/fraud@champion"), Phase.PROGRESSING),
        rolled_back,
        under(await managed(live, "other", "models:/fraud/1"), Phase.PROGRESSING, "/spec/elsewhere"),
    ]
    load(reconciler.index, objs)
    reconciler.publish_states()  # counted before any lookup: a rollout's state needs none
    expected = {"rolling-out": 1.0, "rolled-back": 1.0, "pinned": 1.0}
    assert states() == dict.fromkeys(STATES, 0.0) | expected  # a field the rollout does not cover: its own state
