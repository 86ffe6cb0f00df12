from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import ssl
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from tests.support.fakes import served_certificate
from webhook.tools import certs

NAMES = [*certs.service_names(["modelpin-webhook"], "modelpin-system"), "127.0.0.1", "::1"]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def verify(leaf: x509.Certificate, ca: x509.Certificate, name: x509.GeneralName) -> None:
    store = Store([ca])
    if isinstance(name, x509.DNSName):
        subject: x509.DNSName | x509.IPAddress = name
    else:
        assert isinstance(name, x509.IPAddress)
        subject = name
    verifier = PolicyBuilder().store(store).build_server_verifier(subject)
    verifier.verify(leaf, [])


def test_service_names() -> None:
    assert certs.service_names(["a", "b"], "ns") == [
        "a",
        "a.ns",
        "a.ns.svc",
        "a.ns.svc.cluster.local",
        "b",
        "b.ns",
        "b.ns.svc",
        "b.ns.svc.cluster.local",
    ]


def test_issue_writes_a_verifiable_pair(tmp_path: Path) -> None:
    bundle = certs.issue(tmp_path, [*NAMES, "modelpin-webhook"])  # duplicates are dropped
    assert bundle == certs.Bundle(tmp_path / "ca.crt", tmp_path / "ca.key", tmp_path / "tls.crt", tmp_path / "tls.key")
    ca, leaf = load(bundle.ca_cert), load(bundle.cert)

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "modelpin-webhook",
        "modelpin-webhook.modelpin-system",
        "modelpin-webhook.modelpin-system.svc",
        "modelpin-webhook.modelpin-system.svc.cluster.local",
    ]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "modelpin-webhook"
    assert leaf.issuer == ca.subject
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True

    leaf.verify_directly_issued_by(ca)
    verify(leaf, ca, x509.DNSName("modelpin-webhook.modelpin-system.svc"))
    verify(leaf, ca, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    with pytest.raises(VerificationError):
        verify(leaf, ca, x509.DNSName("elsewhere.example.com"))

    # the key matches the certificate
    key = serialization.load_pem_private_key(bundle.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]

    for private in (bundle.key, bundle.ca_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


def test_validity(tmp_path: Path) -> None:
    bundle = certs.issue(tmp_path, ["localhost"], days=30)
    leaf, ca = load(bundle.cert), load(bundle.ca_cert)
    now = dt.datetime.now(dt.UTC)
    assert leaf.not_valid_before_utc < now
    assert dt.timedelta(days=29) < leaf.not_valid_after_utc - now <= dt.timedelta(days=30)
    assert ca.not_valid_after_utc - now > dt.timedelta(days=3649)


def test_second_issue_keeps_the_ca_and_renews_the_serving_cert(tmp_path: Path) -> None:
    first = certs.issue(tmp_path, ["localhost"])
    ca_pem, ca_key_pem = first.ca_cert.read_bytes(), first.ca_key.read_bytes()
    first_leaf, first_key = load(first.cert), first.key.read_bytes()
    second = certs.issue(tmp_path, ["localhost", "modelpin.example"])
    assert second.ca_cert.read_bytes() == ca_pem
    assert second.ca_key.read_bytes() == ca_key_pem
    second_leaf = load(second.cert)
    assert second_leaf.serial_number != first_leaf.serial_number
    assert second.key.read_bytes() != first_key
    ca = load(second.ca_cert)
    first_leaf.verify_directly_issued_by(ca)
    second_leaf.verify_directly_issued_by(ca)
    verify(second_leaf, ca, x509.DNSName("modelpin.example"))


def test_ensure_ca_rejects_a_non_ec_key(tmp_path: Path) -> None:
    certs.ensure_ca(tmp_path)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "ca.key").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match=r"ca\.key is not an EC private key"):
        certs.ensure_ca(tmp_path)


def test_tls_handshake_with_the_issued_pair(tmp_path: Path) -> None:
    bundle = certs.issue(tmp_path, ["localhost", "127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(bundle.cert, bundle.key)
    der = served_certificate(context, bundle.ca_cert, "localhost")
    assert x509.load_der_x509_certificate(der) == load(bundle.cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        served_certificate(context, bundle.ca_cert, "not-in-the-cert.example")


def test_write_kustomize(tmp_path: Path) -> None:
    bundle = certs.issue(tmp_path / "pki", ["modelpin-webhook.modelpin-system.svc"])
    secret_path, patch_path = certs.write_kustomize(bundle, tmp_path / "overlay", "modelpin-tls", "modelpin-system")
    assert secret_path == tmp_path / "overlay" / "secret.yaml"
    assert patch_path == tmp_path / "overlay" / "cabundle-patch.yaml"
    secret = yaml.safe_load(secret_path.read_text())
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "modelpin-tls", "namespace": "modelpin-system"}
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert base64.b64decode(secret["data"]["tls.crt"]) == bundle.cert.read_bytes()
    assert base64.b64decode(secret["data"]["tls.key"]) == bundle.key.read_bytes()
    assert base64.b64decode(secret["data"]["ca.crt"]) == bundle.ca_cert.read_bytes()
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    patch = yaml.safe_load(patch_path.read_text())
    ca = base64.b64encode(bundle.ca_cert.read_bytes()).decode()
    # both entries: everyone's, and the reconciler's fail-closed one
    assert patch == [
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": ca},
    ]


def test_keys_are_private_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With no umask and no chmod allowed, only a file created 0600 ends up 0600; a leftover
    # temporary file from an interrupted run (0644) must not lend its mode to the key either.
    (tmp_path / "tls.key.tmp").write_bytes(b"stale")
    (tmp_path / "tls.key.tmp").chmod(0o644)

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("a key's mode is set at creation, not after its bytes are written")

    monkeypatch.setattr(Path, "chmod", no_chmod)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    old = os.umask(0)
    try:
        bundle = certs.issue(tmp_path, ["localhost"])
        secret_path, _ = certs.write_kustomize(bundle, tmp_path / "overlay", "tls", "ns")
    finally:
        os.umask(old)
    for private in (bundle.key, bundle.ca_key, secret_path):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(bundle.cert.stat().st_mode) == 0o644
    assert not list(tmp_path.glob("*.tmp"))


def test_issue_client_writes_a_client_auth_pair_from_the_same_ca(tmp_path: Path) -> None:
    bundle = certs.issue(tmp_path, ["modelpin-webhook"])
    cert_path, key_path = certs.issue_client(tmp_path, "kube-apiserver", ["apiserver.local"], stem="apiserver")
    assert (cert_path, key_path) == (tmp_path / "apiserver.crt", tmp_path / "apiserver.key")
    ca, leaf = load(bundle.ca_cert), load(cert_path)
    leaf.verify_directly_issued_by(ca)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kube-apiserver"
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["apiserver.local"]
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.public_key() == leaf.public_key()
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    # a serving certificate names its issuer's key; a client one without DNS names has no SAN at all
    assert load(bundle.cert).extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    bare, _ = certs.issue_client(tmp_path, "someone")
    with pytest.raises(x509.ExtensionNotFound):
        load(bare).extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_issue_client_names_the_organization_the_apiserver_reads_as_group(tmp_path: Path) -> None:
    cert_path, _ = certs.issue_client(tmp_path, "admin", days=1, stem="admin", organization="system:masters")
    leaf = load(cert_path)
    leaf.verify_directly_issued_by(load(tmp_path / "ca.crt"))
    # kube-apiserver: CN is the user name, each O a group
    assert leaf.subject.rfc4514_string() == "CN=admin,O=system:masters"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=1, minutes=5)
    plain, _ = certs.issue_client(tmp_path, "someone")
    assert load(plain).subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
