"""Mutual TLS between the real apiserver and ``modelpin serve --client-ca``.

The session's webhook requires a client certificate; the apiserver presents
one through its AdmissionConfiguration ``kubeConfigFile``. Every e2e admission
therefore already goes through mutual TLS; this module shows both sides of it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from tests.e2e.cluster import NS, ROOT
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, isvc, modelpin_config, post_as
from webhook.config import Settings
from webhook.tools import certs

pytestmark = pytest.mark.e2e


def test_the_apiserver_is_answered_and_a_direct_caller_is_refused(
    cluster: ControlPlane, webhook: ModelpinServer, catalog: Catalog
) -> None:
    obj = isvc("models:/fraud@champion", name="mtls-check")
    out = cluster.kubectl(
        "create", "--dry-run=server", "-n", NS, "-o", "json", "-f", "-", input=orjson.dumps(obj).decode()
    )
    stored = orjson.loads(out.stdout)
    uri = stored["spec"]["predictor"]["model"]["storageUri"]
    # resolved by the webhook, which answers only callers with a client certificate
    assert uri == catalog.location("fraud", catalog.version_for("fraud", "champion"))
    assert stored["metadata"]["labels"]["modelpin.io/managed"] == "true"

    refused = post_as(webhook, isvc("models:/fraud@champion"), None)
    assert refused.status_code == 403
    assert "client certificate" in refused.json()["error"]
    assert cluster.webhook_client is not None
    pair = cluster.webhook_client
    assert post_as(webhook, isvc("models:/fraud@champion"), (str(pair.cert), str(pair.key))).status_code == 200


APISERVER_NAME = "kube-apiserver-webhook-client"


@pytest.fixture(scope="module")
def named_clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client CA with certificates for the apiserver's name, by CN and by DNS SAN, and for another name."""
    pki = tmp_path_factory.mktemp("client-pki")
    certs.issue_client(pki, APISERVER_NAME, stem="apiserver")
    certs.issue_client(pki, "node-7", [APISERVER_NAME], stem="by-san")
    certs.issue_client(pki, "system:node:node-7", ["node-7.cluster.local"], stem="kubelet")
    certs.issue_client(pki / "other", APISERVER_NAME, stem="other-ca")
    return pki


@pytest.fixture(scope="module")
def name_checking(
    mlflow_server: MlflowServer, ca_dir: Path, named_clients: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelpinServer]:
    server = ModelpinServer(
        tmp_path_factory.mktemp("named-modelpin"),
        modelpin_config(mlflow_server.url, tls_client_names=[APISERVER_NAME]),
        ca_dir,
        extra_args=["--client-ca", str(named_clients / "ca.crt")],
    )
    yield server
    server.stop()


def pair(pki: Path, stem: str) -> tuple[str, str]:
    return str(pki / f"{stem}.crt"), str(pki / f"{stem}.key")


def test_a_certificate_from_the_right_ca_with_the_wrong_name_is_refused(
    name_checking: ModelpinServer, named_clients: Path, catalog: Catalog
) -> None:
    obj = isvc("models:/fraud@champion")
    answered = post_as(name_checking, obj, pair(named_clients, "apiserver"))
    assert answered.status_code == 200 and answered.json()["response"]["allowed"] is True
    assert post_as(name_checking, obj, pair(named_clients, "by-san")).status_code == 200  # a DNS SAN counts

    refused = post_as(name_checking, obj, pair(named_clients, "kubelet"))
    assert refused.status_code == 403
    assert refused.json()["error"] == (
        "the client certificate names node-7.cluster.local, system:node:node-7; /mutate answers only "
        f"{APISERVER_NAME} (tls_client_names)"
    )
    assert post_as(name_checking, obj, None).status_code == 403  # no certificate at all
    with pytest.raises(httpx.HTTPError):  # the right name from another CA fails the handshake
        post_as(name_checking, obj, pair(named_clients / "other", "other-ca"))
    # probes and scrapes stay open to anyone
    assert httpx.get(f"{name_checking.url}/readyz", verify=name_checking.tls).status_code == 200
    assert name_checking.client.get("/metrics").status_code == 200


def test_the_mutual_tls_component_as_documented(cluster: ControlPlane, tmp_path: Path, named_clients: Path) -> None:
    # The overlay in the component's README, verbatim, rendered and applied by a server-side dry run.
    manifests = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests", manifests)
    readme = (manifests / "components" / "mutual-tls" / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    overlay = manifests / "overlays" / "mutual"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(example)
    shutil.copy(named_clients / "ca.crt", overlay / "apiserver-client-ca.crt")
    cluster.kubectl("create", "namespace", "modelpin-system", check=False)
    rendered = [d for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(overlay)).stdout) if d]
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == "modelpin-webhook"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--client-ca=/client-ca/ca.crt" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert orjson.loads(env["MODELPIN_TLS_CLIENT_NAMES"]) == [APISERVER_NAME]
    assert {"name": "client-ca", "mountPath": "/client-ca", "readOnly": True} in container["volumeMounts"]
    (ca_map,) = [d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "modelpin-client-ca"]
    assert ca_map["data"]["ca.crt"] == (named_clients / "ca.crt").read_text()
    # the setting the variable carries is what the webhook reads
    assert Settings(tls_client_names=orjson.loads(env["MODELPIN_TLS_CLIENT_NAMES"])).tls_client_names == [
        APISERVER_NAME
    ]
