"""Mutual TLS between the real apiserver and ``modelpin serve --client-ca``.

The session's webhook requires a client certificate; the apiserver presents
one through its AdmissionConfiguration ``kubeConfigFile``. Every e2e admission
therefore already goes through mutual TLS; this module shows both sides of it.
"""

from __future__ import annotations

import ssl

import httpx
import orjson
import pytest

from tests.e2e.cluster import NS
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.modelpin_server import ModelpinServer, isvc
from tests.support.reviews import make_review

pytestmark = pytest.mark.e2e


def direct_post(server: ModelpinServer, cert: tuple[str, str] | None) -> httpx.Response:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    body = orjson.dumps(make_review(isvc("models:/fraud@champion")))
    with httpx.Client(base_url=server.url, verify=ctx, timeout=10) as client:
        return client.post("/mutate", content=body, headers={"Content-Type": "application/json"})


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

    refused = direct_post(webhook, None)
    assert refused.status_code == 403
    assert "client certificate" in refused.json()["error"]
    assert cluster.webhook_client is not None
    pair = cluster.webhook_client
    assert direct_post(webhook, (str(pair.cert), str(pair.key))).status_code == 200
