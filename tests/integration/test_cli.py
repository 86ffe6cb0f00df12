"""The ``modelpin`` command as a user runs it: render, certs, and serve on embedded defaults."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from cryptography import x509

from tests.support.catalog import Catalog
from tests.support.cli import modelpin
from tests.support.modelpin_server import ModelpinServer
from tests.support.reviews import FIXTURES, apply, at
from webhook.tools.processes import Process, free_port

pytestmark = pytest.mark.integration


def test_render_resolves_multi_document_yaml(modelpin_server_config: Path, catalog: Catalog) -> None:
    text = (FIXTURES / "seldon-seed.yaml").read_text() + "---\n" + (FIXTURES / "isvc-legacy.yaml").read_text()
    result = modelpin("render", "-f", "-", "--config", str(modelpin_server_config), stdin=text)
    assert result.returncode == 0, result.stderr
    seldon, legacy = yaml.safe_load_all(result.stdout)
    specs = yaml.safe_dump([seldon["spec"], legacy["spec"]])
    assert "{{" not in specs and "models:/" not in specs
    version = catalog.version_for("iris demo4", "champion")
    loc = catalog.location("iris demo4", version)
    assert seldon["spec"]["predictors"][0]["graph"]["modelUri"] == "wasbs://artifacts/" + loc.split(".net/", 1)[1]
    assert legacy["spec"]["predictor"]["sklearn"]["storageUri"] == catalog.location("fraud", "2")


def test_render_fails_with_the_webhook_message(modelpin_server_config: Path) -> None:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "bad"},
        "spec": {"predictor": {"model": {"storageUri": "models:/missing-model@champion"}}},
    }
    result = modelpin("render", "--config", str(modelpin_server_config), stdin=yaml.safe_dump(doc))
    assert result.returncode == 1
    assert "InferenceService/bad" in result.stderr and "/spec/predictor/model/storageUri" in result.stderr
    assert "missing-model" in result.stderr and result.stdout == ""


def test_render_applies_namespace_policy(modelpin_server_config: Path) -> None:
    result = modelpin(
        "render",
        "-f",
        str(FIXTURES / "seldon-seed.yaml"),
        "--namespace",
        "restricted",
        "--config",
        str(modelpin_server_config),
    )
    assert result.returncode == 1 and "may not use model" in result.stderr


def test_render_without_a_registry_says_what_to_pass_and_writes_nothing(tmp_path: Path) -> None:
    doc = yaml.safe_dump(
        {"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"uri": "models:/iris@champion"}}
    )
    result = modelpin("render", stdin=doc, cwd=tmp_path)
    assert result.returncode == 2
    assert "--config" in result.stderr and "--registry" in result.stderr and "--demo" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no modelpin-data/, no demo models


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    result = modelpin("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"modelpin {version('modelpin')}"


def test_certs_writes_kustomize_files_and_rotates(tmp_path: Path) -> None:
    out, overlay = tmp_path / "certs", tmp_path / "overlay"
    first = modelpin("certs", "--out", str(out), "--kustomize", str(overlay), "--san", "webhook.example.com")
    assert first.returncode == 0, first.stderr
    ca_before = (out / "ca.crt").read_bytes()
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {
        "modelpin-webhook.modelpin-system.svc",
        "modelpin-reconciler.modelpin-system.svc",
        "webhook.example.com",
    } <= set(names)
    secret = yaml.safe_load((overlay / "secret.yaml").read_text())
    assert secret["kind"] == "Secret" and set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    patch = yaml.safe_load((overlay / "cabundle-patch.yaml").read_text())
    assert patch[0]["path"] == "/webhooks/0/clientConfig/caBundle"
    second = modelpin("certs", "--out", str(out))
    assert second.returncode == 0
    assert (out / "ca.crt").read_bytes() == ca_before
    assert x509.load_pem_x509_certificate((out / "tls.crt").read_bytes()).serial_number != cert.serial_number


def test_serve_on_embedded_defaults(tmp_path: Path) -> None:
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "webhook", "serve", "--port", str(port)], tmp_path / "serve.log", cwd=tmp_path
    )
    try:
        ca = tmp_path / "modelpin-data" / "certs" / "ca.crt"
        tls = None

        def ready() -> bool:
            nonlocal tls
            tls = tls or ssl.create_default_context(cafile=str(ca))
            return httpx.get(f"https://127.0.0.1:{port}/readyz", verify=tls, timeout=2).status_code == 200

        proc.wait_until(ready, timeout=90, what="modelpin serve (embedded)")
        printed = proc.tail(20)
        assert "sqlite:///" in printed and "curl --cacert" in printed
        sample = tmp_path / "modelpin-data" / "sample-review.json"
        review = orjson.loads(sample.read_bytes())
        r = httpx.post(
            f"https://127.0.0.1:{port}/mutate",
            content=sample.read_bytes(),
            headers={"Content-Type": "application/json"},
            verify=tls,
        )
        out = apply(review["request"]["object"], r.json())
        for pointer in ("/spec/predictors/0/graph/modelUri", "/spec/predictors/0/graph/children/0/children/0/modelUri"):
            assert at(out, pointer).startswith("wasbs://artifacts/mlflow/1/")
        assert (tmp_path / "modelpin-data" / "registry.db").is_file()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def modelpin_server_config(modelpin: ModelpinServer) -> Path:
    return modelpin.config_path
