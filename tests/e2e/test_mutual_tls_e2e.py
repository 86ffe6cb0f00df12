"""Mutual TLS between the real apiserver and ``modelpin serve --client-ca``.

The session's webhook requires a client certificate; the apiserver presents
one through its AdmissionConfiguration ``kubeConfigFile``. Every e2e admission
therefore already goes through mutual TLS; this module shows both sides of it.
"""

from __future__ import annotations

import orjson
import pytest

from tests.e2e.cluster import NS
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.modelpin_server import ModelpinServer, isvc, post_as

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
