"""The reconciler on a real apiserver with a real MLflow server delivering real webhooks.

Lag figures are printed (``-s`` shows them) and also written to
``benchmarks-out/reconciler-lag.json``; they are measurements, not assertions.
"""

from __future__ import annotations

import copy
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mlflow.entities.webhook import WebhookEvent

from tests.e2e.cluster import apply_docs, base_docs, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.forwarder import Forwarder
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer
from tests.support.reconciler_process import ACCOUNT, SECRET, Reconciler, Start, account_kubeconfig
from webhook.reconcile.deliveries import EVENTS, sign

NS = "e2e"
ROOT = Path(__file__).resolve().parents[2]


class Api:
    """Fast reads straight from the apiserver, as the admin."""

    def __init__(self, cp: ControlPlane) -> None:
        context = ssl.create_default_context(cafile=str(cp.ca_file))
        context.load_cert_chain(str(cp.admin_cert), str(cp.admin_key))
        self.client = httpx.Client(base_url=cp.server, verify=context, timeout=10)

    def isvc(self, name: str) -> dict[str, Any]:
        r = self.client.get(f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{name}")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def patch_as(self, user: str, name: str, patch: dict[str, Any]) -> httpx.Response:
        """A merge patch as ``user`` (impersonated), without the GET kubectl makes first: the reconciler has no get."""
        return self.client.patch(
            f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{name}",
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json", "Impersonate-User": user},
        )


def isvc(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }


def uri_of(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["predictor"]["model"]["storageUri"])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{what} not seen within {timeout}s")


@pytest.fixture(scope="module")
def api(cluster: ControlPlane) -> Iterator[Api]:
    reader = Api(cluster)
    yield reader
    reader.client.close()


Fresh = Callable[[], tuple[str, str]]


@pytest.fixture()
def fresh_model(catalog: Catalog) -> Callable[[], tuple[str, str]]:
    def make() -> tuple[str, str]:
        name = f"rec-{uuid.uuid4().hex[:8]}"
        version = catalog.new_run_version(name, experiment=catalog.s3_experiment)
        catalog.client.set_registered_model_alias(name, "champion", version)
        return name, version

    return make


def record_lags(kind: str, lags: list[float]) -> None:
    out = ROOT / "benchmarks-out"
    out.mkdir(exist_ok=True)
    path = out / "reconciler-lag.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[kind] = {"moves": len(lags), "median_s": statistics.median(lags), "max_s": max(lags), "all": lags}
    path.write_text(json.dumps(data, indent=2))
    print(f"\n{kind}: {len(lags)} alias moves, median {statistics.median(lags):.3f}s, max {max(lags):.3f}s")


def move_and_measure(catalog: Catalog, api: Api, name: str, objects: list[str], moves: int) -> list[float]:
    lags = []
    for _ in range(moves):
        version = catalog.new_run_version(name, experiment=catalog.s3_experiment)
        expected = catalog.location(name, version)
        started = time.monotonic()
        catalog.client.set_registered_model_alias(name, "champion", version)
        wait_for(
            lambda want=expected: all(uri_of(api.isvc(o)) == want for o in objects),  # type: ignore[misc]
            30,
            f"{name} -> v{version}",
        )
        lags.append(time.monotonic() - started)
    return lags


def test_alias_moves_follow_mlflow_webhooks(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh
) -> None:
    name, _ = fresh_model()
    other, _ = fresh_model()
    rec = start_reconciler(lease="hooks", poll=3600, identity="hooks")
    rec.wait_leading()
    # registered the way the README says, with the project's own command
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "mlflow-webhook",
            "install",
            "--tracking-uri",
            catalog.tracking_uri,
            "--url",
            f"{rec.url}/mlflow/events",
            "--name",
            f"modelpin-{name}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MODELPIN_MLFLOW_WEBHOOK_SECRET": SECRET},
    )
    assert installed.returncode == 0, installed.stderr
    hook_id = installed.stdout.split()[3]
    hook = catalog.client.get_webhook(hook_id)
    assert set(hook.events) == {WebhookEvent.from_str(e) for e in EVENTS}  # type: ignore[arg-type]
    try:
        objects = [f"{name}-{i}" for i in range(3)]
        docs = [isvc(o, f"models:/{name}@champion") for o in objects] + [isvc("bystander", f"models:/{other}@champion")]
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        bystander_rv = api.isvc("bystander")["metadata"]["resourceVersion"]
        record_lags("mlflow webhooks", move_and_measure(catalog, api, name, objects, 20))
        assert api.isvc("bystander")["metadata"]["resourceVersion"] == bystander_rv
        events = cluster.kubectl(
            "get", "events", "-n", NS, "--field-selector", "reason=ModelVersionChanged", "-o", "json"
        ).stdout
        messages = [e["message"] for e in json.loads(events)["items"]]
        assert any(m.startswith(f"{name}: ") and m.endswith("(@champion)") and " -> " in m for m in messages)
    finally:
        catalog.client.delete_webhook(hook_id)


def test_polling_sees_stage_promotions_and_alias_moves(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh
) -> None:
    name, v1 = fresh_model()
    start_reconciler(lease="poll", poll=1.0, identity="poller", secret=False).wait_leading()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated in MLflow, still used
        catalog.client.transition_model_version_stage(name, v1, "Production")
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("staged", f"models:/{name}/Production")))
        assert uri_of(api.isvc("staged")) == catalog.location(name, v1)
        v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
        catalog.client.transition_model_version_stage(name, v2, "Production")
    took = wait_for(lambda: uri_of(api.isvc("staged")) == catalog.location(name, v2), 10, "stage promotion")
    # one 1 s interval, one more if the promotion landed while a compare ran, then the touch and re-admission
    assert took < 3.0, took
    moving, _ = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("polled", f"models:/{moving}@champion")))
    record_lags("polling only (1 s interval)", move_and_measure(catalog, api, moving, ["polled"], 20))


def test_forged_stale_and_replayed_deliveries_touch_nothing(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh
) -> None:
    name, _ = fresh_model()
    rec = start_reconciler(lease="forged", poll=3600, identity="forged")
    indexed = rec.wait_synced()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("guarded", f"models:/{name}@champion")))
    rec.wait_synced(indexed + 1)  # seen by the watch: no relist (and its compare) pending
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    before = api.isvc("guarded")["metadata"]["resourceVersion"]
    data = {"name": name, "alias": "champion", "version": v2}
    body = json.dumps({"entity": "model_version_alias", "action": "created", "data": data}).encode()

    def post(delivery: str, ts: int, signature: str) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": str(ts),
            "X-MLflow-Signature": signature,
        }
        return httpx.post(f"{rec.url}/mlflow/events", content=body, verify=rec.tls, headers=headers)

    now = int(time.time())
    forged = post("d-1", now, sign("wrong-secret", "d-1", str(now), body))
    assert forged.status_code == 401 and "signature" in forged.json()["error"]
    stale = post("d-2", now - 900, sign(SECRET, "d-2", str(now - 900), body))
    assert stale.status_code == 401 and "timestamp" in stale.json()["error"]
    assert post("d-3", now, "").status_code == 401
    time.sleep(1.5)
    assert api.isvc("guarded")["metadata"]["resourceVersion"] == before
    # a genuine delivery works once, and its replay is refused
    assert post("d-4", now, sign(SECRET, "d-4", str(now), body)).status_code == 202
    wait_for(lambda: uri_of(api.isvc("guarded")) == catalog.location(name, v2), 10, "genuine delivery")
    # the alias moves again with no delivery (polling is off): a replay must not be what notices it
    v3 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v3)
    settled = api.isvc("guarded")["metadata"]["resourceVersion"]
    replay = post("d-4", now, sign(SECRET, "d-4", str(now), body))
    assert replay.status_code == 401 and "already" in replay.json()["error"]
    time.sleep(1.5)
    assert api.isvc("guarded")["metadata"]["resourceVersion"] == settled


def test_paused_object_keeps_its_version_until_unpaused(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh
) -> None:
    name, v1 = fresh_model()
    obj = isvc("paused", f"models:/{name}@champion")
    obj["metadata"]["annotations"] = {"modelpin.io/paused": "true"}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    start_reconciler(lease="pause", poll=1.0, identity="pause").wait_leading()
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    time.sleep(3)  # three poll intervals
    assert uri_of(api.isvc("paused")) == catalog.location(name, v1)
    cluster.kubectl("annotate", "inferenceservice", "paused", "-n", NS, "modelpin.io/paused-")
    wait_for(lambda: uri_of(api.isvc("paused")) == catalog.location(name, v2), 10, "unpaused object")


def test_standby_takes_over_and_applies_changes_made_meanwhile(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh
) -> None:
    name, _ = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("failover", f"models:/{name}@champion")))
    a = start_reconciler(lease="ha", poll=3600, identity="a")
    a.wait_leading()
    b = start_reconciler(lease="ha", poll=3600, identity="b")
    time.sleep(2)
    assert a.leading() and not b.leading()
    assert b.get("/readyz").status_code == 200  # a standby is ready too, just not leading
    # SIGKILL: no chance to release the lease, so the standby must wait it out
    a.process.proc.kill()
    a.process.proc.wait()
    killed = time.monotonic()
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    moved = time.monotonic() - killed
    assert not b.holds_lease(), f"the move took {moved:.1f} s: it was not made in the gap"
    # timed from the kill, not from the end of the move (MLflow takes seconds here under load)
    wait_for(b.holds_lease, 15, "takeover by the standby")
    took = time.monotonic() - killed
    record_outage("failover after SIGKILL (4 s lease): standby holds the lease, from the kill", took)
    wait_for(b.leading, 15, "the new leader synced")
    record_outage(
        "failover after SIGKILL (4 s lease): standby leading and synced, from the kill", time.monotonic() - killed
    )
    # the lease duration, plus one retry period (0.53 s) with its jitter, plus call latency on a loaded machine
    assert took < 4 + 2
    wait_for(lambda: uri_of(api.isvc("failover")) == catalog.location(name, v2), 15, "change made during failover")
    lease = json.loads(cluster.kubectl("get", "lease", "ha", "-n", NS, "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == "b"


def test_a_leader_that_shuts_down_hands_over_at_once(start_reconciler: Start) -> None:
    a = start_reconciler(lease="handover", poll=3600, identity="first", lease_seconds=30)
    a.wait_leading()
    b = start_reconciler(lease="handover", poll=3600, identity="second", lease_seconds=30)
    time.sleep(1)
    assert not b.leading()
    a.stop()  # SIGTERM: the leader releases the lease
    took = wait_for(b.leading, 25, "handover")
    assert took < 30 / 3 + 2  # one renew period, far less than the 30 s lease


def test_a_deleted_alias_keeps_the_running_version_and_warns(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh
) -> None:
    name, v1 = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("orphan", f"models:/{name}@champion")))
    rec = start_reconciler(lease="orphan", poll=1.0, identity="orphan")
    rec.wait_synced()
    before = api.isvc("orphan")
    catalog.client.delete_registered_model_alias(name, "champion")

    def warned() -> bool:
        out = cluster.kubectl(
            "get", "events", "-n", NS, "--field-selector", "involvedObject.name=orphan,type=Warning", "-o", "json"
        ).stdout
        return any("keeping the current version" in e["message"] for e in json.loads(out)["items"])

    wait_for(warned, 10, "a Warning Event about the missing alias")
    after = api.isvc("orphan")
    assert uri_of(after) == catalog.location(name, v1)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    # an unrelated update is not refused (the webhook may still answer it from its cache) ...
    cluster.kubectl("annotate", "inferenceservice", "orphan", "-n", NS, "team=ml", "--overwrite")
    assert uri_of(api.isvc("orphan")) == catalog.location(name, v1)
    # ... nor is one that makes the webhook ask the registry: the recorded version is kept, with a warning
    # (written as the reconciler: the webhook honours refresh tokens from its account only)
    token = str(int(time.time() * 1000))
    out = api.patch_as(ACCOUNT, "orphan", {"metadata": {"annotations": {"modelpin.io/refresh": token}}})
    warned_text = " ".join(out.headers.get_list("warning"))
    assert out.status_code == 200 and "kept version" in warned_text and "champion" in warned_text, (out, warned_text)
    assert uri_of(api.isvc("orphan")) == catalog.location(name, v1)
    # and it resumes when the reference resolves again
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    wait_for(lambda: uri_of(api.isvc("orphan")) == catalog.location(name, v2), 10, "resumed after the alias returns")


@pytest.fixture(autouse=True, scope="module")
def _deliveries_trust_the_test_ca(mlflow_server: MlflowServer) -> Iterator[None]:
    # The mlflow server trusts the session CA (tests/support/mlflow_trust), so deliveries verify.
    assert mlflow_server.trusted_ca is not None
    yield


def test_the_shipped_rbac_is_all_the_reconciler_needs(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh, tmp_path: Path
) -> None:
    # the reconciler's ServiceAccount, ClusterRole and leader-election Role, as shipped (reconciler_account),
    # and its own lease in modelpin-system
    account = ACCOUNT
    # least privilege: nothing beyond the managed kinds, events and its own lease
    for verb, resource in (("list", "secrets"), ("delete", "inferenceservices"), ("update", "leases/other-lease")):
        answer = cluster.kubectl("auth", "can-i", verb, resource, f"--as={account}", "-A", check=False).stdout.strip()
        assert answer == "no", f"{verb} {resource}: {answer}"

    name, _ = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("rbac", f"models:/{name}@champion")))
    rec = start_reconciler(
        lease="modelpin-reconciler",
        lease_namespace="modelpin-system",
        poll=1.0,
        identity="rbac",
        secret=False,
    )
    rec.wait_synced(at_least=1)
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    wait_for(lambda: uri_of(api.isvc("rbac")) == catalog.location(name, v2), 15, "followed under its own identity")

    def recorded() -> bool:
        out = cluster.kubectl(
            "get",
            "events",
            "-n",
            NS,
            "--field-selector",
            "involvedObject.name=rbac,reason=ModelVersionChanged",
            "-o",
            "json",
        ).stdout
        return bool(json.loads(out)["items"])

    wait_for(recorded, 10, "a ModelVersionChanged Event recorded with the shipped permissions")


def record_outage(kind: str, seconds: float) -> None:
    out = ROOT / "benchmarks-out"
    out.mkdir(exist_ok=True)
    path = out / "reconciler-outages.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[kind] = seconds
    path.write_text(json.dumps(data, indent=2))
    print(f"\n{kind}: {seconds:.2f}s")


def test_a_cut_longer_than_the_lease_is_survived(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh, tmp_path: Path
) -> None:
    name, _ = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("cut", f"models:/{name}@champion")))
    forwarder = Forwarder(cluster.port)
    try:
        # the apiserver's certificate names 127.0.0.1, which is where the forwarder listens
        kubeconfig = account_kubeconfig(
            cluster, tmp_path / "via-forwarder.kubeconfig", f"https://127.0.0.1:{forwarder.port}"
        )
        rec = start_reconciler(lease="cut", poll=1.0, identity="cut", secret=False, kubeconfig=kubeconfig)
        rec.wait_synced(at_least=1)
        forwarder.cut()
        v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
        catalog.client.set_registered_model_alias(name, "champion", v2)  # made during the cut
        wait_for(lambda: rec.get("/readyz").status_code == 503, 10, "readiness reporting the outage")
        time.sleep(8)  # twice the 4 s lease: leadership is lost, watches fail, retries back off
        assert rec.process.proc.poll() is None
        assert rec.state()["leader"] is False and rec.state()["reachable"] is False
        forwarder.restore()
        restored = time.monotonic()
        wait_for(lambda: uri_of(api.isvc("cut")) == catalog.location(name, v2), 30, "the move made during the cut")
        record_outage("move made during an 8 s cut, seen after restore", time.monotonic() - restored)
        v3 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
        catalog.client.set_registered_model_alias(name, "champion", v3)  # made after it
        wait_for(lambda: uri_of(api.isvc("cut")) == catalog.location(name, v3), 15, "the move made after the cut")
        assert rec.process.proc.poll() is None and rec.leading()
        log = rec.process.log.read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        forwarder.close()


def test_the_reconciler_recovers_from_an_apiserver_restart(
    start_reconciler: Start, cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh
) -> None:
    name, _ = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("restart", f"models:/{name}@champion")))
    rec = start_reconciler(lease="restart", poll=1.0, identity="restart", secret=False)
    rec.wait_synced(at_least=1)
    cluster.restart_apiserver(down_seconds=3)
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    took = wait_for(lambda: uri_of(api.isvc("restart")) == catalog.location(name, v2), 60, "a move after the restart")
    record_outage("move after an apiserver restart (3 s down)", took)
    assert rec.process.proc.poll() is None
    wait_for(rec.leading, 30, "leading and synced again")


def test_the_reconciler_may_change_only_the_refresh_token(
    cluster: ControlPlane, api: Api, catalog: Catalog, fresh_model: Fresh, webhook: ModelpinServer
) -> None:
    kinds = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    apply_docs(cluster, [d for d in base_docs(cluster) if d["kind"] in kinds])
    name, _ = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("guarded-spec", f"models:/{name}@champion")))
    # straight PATCHes as the reconciler's account: kubectl would GET first, which the reconciler may not
    spec_change = api.patch_as(ACCOUNT, "guarded-spec", {"spec": {"predictor": {"model": {"runtime": "elsewhere"}}}})
    # refused by the webhook's reconciler entry, or by the ValidatingAdmissionPolicy behind it
    refused_why = ("may change only the template fields", "only through a refresh")
    assert spec_change.status_code == 403 and any(w in spec_change.text for w in refused_why), spec_change.text
    label = api.patch_as(ACCOUNT, "guarded-spec", {"metadata": {"labels": {"x": "y"}}})
    assert label.status_code >= 400 and "labels" in label.text, label.text
    other = api.patch_as(ACCOUNT, "guarded-spec", {"metadata": {"annotations": {"a": "b"}}})
    assert other.status_code >= 400 and "annotation" in other.text, other.text
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    token = str(int(time.time() * 1000) + 1)
    time.sleep(0.01)
    refresh = api.patch_as(ACCOUNT, "guarded-spec", {"metadata": {"annotations": {"modelpin.io/refresh": token}}})
    assert refresh.status_code == 200, refresh.text
    assert uri_of(api.isvc("guarded-spec")) == catalog.location(name, v2)  # re-resolved by the webhook


def touches(rec: Reconciler, result: str) -> float:
    """The reconciler's own count of touches with this result, from its /metrics."""
    for line in rec.get("/metrics").text.splitlines():
        if line.startswith(f'modelpin_reconciler_touches_total{{result="{result}"}} '):
            return float(line.split()[-1])
    return 0.0


def test_a_touch_refused_while_the_webhook_is_down_is_retried_until_the_object_moves(
    start_reconciler: Start,
    cluster: ControlPlane,
    api: Api,
    catalog: Catalog,
    fresh_model: Fresh,
    webhook: ModelpinServer,
) -> None:
    name, v1 = fresh_model()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc("missed", f"models:/{name}@champion")))
    forwarder = Forwarder(webhook.port)
    shipped = webhook_configuration(cluster, webhook)
    behind = copy.deepcopy(shipped)
    for hook in behind["webhooks"]:
        hook["clientConfig"]["url"] = f"https://127.0.0.1:{forwarder.port}/mutate"
    try:
        apply_docs(cluster, [behind])
        time.sleep(2)  # the apiserver loads webhook configurations asynchronously
        forwarder.cut()
        v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
        catalog.client.set_registered_model_alias(name, "champion", v2)
        # no poll and no deliveries during the test: only the touch's own retries can move the object
        rec = start_reconciler(lease="missed", poll=3600, identity="missed", secret=False)
        rec.wait_synced(at_least=1)
        # the reconciler's writes go through the failurePolicy Fail entry: refused while the webhook is down
        wait_for(lambda: touches(rec, "error") >= 1, 60, "a touch refused while the webhook is down")
        assert uri_of(api.isvc("missed")) == catalog.location(name, v1)
        forwarder.restore()
        restored = time.monotonic()
        wait_for(lambda: uri_of(api.isvc("missed")) == catalog.location(name, v2), 90, "the object moved once it is up")
        record_outage("touch refused while the webhook was down, moved after it came back", time.monotonic() - restored)
        assert touches(rec, "retried") >= 1
        wait_for(lambda: touches(rec, "confirmed") >= 1, 30, "the touch confirmed by the watch")
    finally:
        forwarder.close()
        apply_docs(cluster, [shipped])
        wait_for_webhook(cluster)
