"""A CA and serving certificates for the webhook (``modelpin certs``, embedded default).

Re-running with an existing CA keeps the CA (so the caBundle the apiserver
trusts stays valid) and issues a new serving certificate: that is rotation.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.generators.admission_cel import base_webhook

CA_DAYS = 3650
SERVING_DAYS = 365


@dataclass(frozen=True, slots=True)
class Bundle:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    # A leftover from an interrupted run keeps its mode under O_CREAT: start from a new file.
    tmp.unlink(missing_ok=True)
    # A private file is 0600 from its creation, so a key is never readable by others, not
    # even between the write and a chmod (the umask can only narrow this further).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    # rename is atomic, so a server watching the file never reads half of it
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _save(cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    # key first: a watcher that sees the new cert must find its key already there
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    """What every certificate here has: names, key, a random serial, and validity from five minutes ago
    (clocks disagree a little) for ``days``."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _leaf(
    directory: Path, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName], days: int
) -> tuple[x509.CertificateBuilder, ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    """A new key and an end-entity certificate for it, not yet signed: (builder, key, the CA's key)."""
    ca_cert, ca_key = ensure_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(subject, ca_cert.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder, key, ca_key


def ensure_ca(directory: Path, common_name: str = "modelpin CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _save(cert_path, key_path, cert, key)
    return cert, key


def service_names(services: Iterable[str], namespace: str) -> list[str]:
    names: list[str] = []
    for svc in services:
        names += [
            svc,
            f"{svc}.{namespace}",
            f"{svc}.{namespace}.svc",
            f"{svc}.{namespace}.svc.cluster.local",
        ]
    return names


def issue(directory: Path, names: Iterable[str], days: int = SERVING_DAYS) -> Bundle:
    """Issue a serving certificate for DNS names and IP addresses in ``names``."""
    sans: list[x509.GeneralName] = []
    all_names = list(dict.fromkeys(names))
    for name in all_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, all_names[0])])
    builder, key, ca_key = _leaf(directory, subject, ExtendedKeyUsageOID.SERVER_AUTH, sans, days)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = builder.add_extension(authority, critical=False).sign(ca_key, hashes.SHA256())
    bundle = Bundle(directory / "ca.crt", directory / "ca.key", directory / "tls.crt", directory / "tls.key")
    _save(bundle.cert, bundle.key, cert, key)
    return bundle


def issue_client(
    directory: Path,
    common_name: str,
    dns_names: Iterable[str] = (),
    days: int = SERVING_DAYS,
    stem: str = "client",
    organization: str | None = None,
) -> tuple[Path, Path]:
    """A client certificate (clientAuth) from the CA in ``directory``: ``<stem>.crt`` and ``<stem>.key``.

    For the apiserver's AdmissionConfiguration kubeConfigFile when the webhook requires a client
    certificate (tls_client_ca, tls_client_names): the CN and DNS names are what the webhook matches.
    A kube-apiserver trusting the CA reads the certificate as user CN in group ``organization`` (O=),
    e.g. ``system:masters`` for an administrator.
    """
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    builder, key, ca_key = _leaf(directory, x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH, sans, days)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    _save(cert_path, key_path, builder.sign(ca_key, hashes.SHA256()), key)
    return cert_path, key_path


def write_kustomize(bundle: Bundle, directory: Path, secret: str, namespace: str) -> tuple[Path, Path]:
    """The self-signed overlay's generated Secret and caBundle patch."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": secret, "namespace": namespace},
        "data": {
            "tls.crt": b64(bundle.cert),
            "tls.key": b64(bundle.key),
            "ca.crt": b64(bundle.ca_cert),
        },
    }
    ca = b64(bundle.ca_cert)
    # every entry of the base's MutatingWebhookConfiguration calls the same service
    patch = [
        {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca}
        for i in range(len(base_webhook()["webhooks"]))
    ]
    secret_path, patch_path = directory / "secret.yaml", directory / "cabundle-patch.yaml"
    _write(secret_path, yaml.safe_dump(manifest, sort_keys=False).encode(), private=True)
    _write(patch_path, yaml.safe_dump(patch, sort_keys=False).encode())
    return secret_path, patch_path
