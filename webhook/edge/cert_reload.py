"""Serving certificate reload without a restart.

cert-manager and kubelet rotate a mounted Secret by swapping files in place.
``SSLContext.load_cert_chain`` on the live context makes every later
handshake use the new pair, so polling the files' identity is enough.

Each file is read once per reload and the context is built from those bytes:
reading the paths again (a check, then the load) could pair a certificate
from before a swap with a key from after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook import metrics

log = logging.getLogger("modelpin.tls")

# ssl loads a chain from files only: the bytes read go to a private file in memory when there is one.
_SCRATCH_DIRS = ("/dev/shm",)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows the ..data symlink of a mounted Secret
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class PairError(ValueError):
    """The certificate and key read do not make a usable pair."""


def check_pair(cert_pem: bytes, key_pem: bytes) -> x509.Certificate:
    """The leaf certificate, when ``key_pem`` is the private key of its public key."""
    try:
        leaf = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PairError(f"unreadable certificate or key: {exc}") from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise PairError("the key does not match the certificate (a rotation half done?)")
    return leaf


def load_pair(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``context.load_cert_chain`` from bytes, through a 0600 scratch file removed at once."""
    scratch = next((d for d in _SCRATCH_DIRS if os.access(d, os.W_OK)), None)
    fd, name = tempfile.mkstemp(prefix="modelpin-tls-", suffix=".pem", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key_pem.rstrip(b"\n") + b"\n" + cert_pem)
        context.load_cert_chain(name)
    finally:
        os.unlink(name)


def _export_expiry(leaf: x509.Certificate) -> None:
    """The served leaf's notAfter, for the expiry alert: a rotation that never happens is silent otherwise."""
    metrics.CERT_EXPIRY.set(leaf.not_valid_after_utc.timestamp())


class CertReloader:
    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self._seen = (_identity(cert), _identity(key))
        try:
            _export_expiry(x509.load_pem_x509_certificate(cert.read_bytes()))
        except (OSError, ValueError) as exc:
            log.warning("cannot read the expiry of %s: %s", cert, exc)

    def problems(self) -> list[str]:
        return [f"{p} is missing" for p in (self.cert, self.key) if not p.is_file()]

    def check(self) -> bool:
        """Reload if either file changed; True when a new pair was loaded."""
        # Identity before the bytes: a swap after the stat shows as a change on the next tick.
        current = (_identity(self.cert), _identity(self.key))
        if current == self._seen or None in current:
            return False
        try:
            cert_pem, key_pem = self.cert.read_bytes(), self.key.read_bytes()
            leaf = check_pair(cert_pem, key_pem)
            # Loaded on a scratch context first: a pair the TLS library refuses must not
            # leave the live context half changed.
            load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert_pem, key_pem)
            load_pair(self.context, cert_pem, key_pem)
        except (PairError, ssl.SSLError, OSError) as exc:
            # A half-rotated pair (new cert, old key) fails here; keep serving
            # the old pair and try again on the next tick.
            metrics.CERT_RELOADS.labels("error").inc()
            log.warning("serving certificate not reloaded: %s", exc)
            return False
        self._seen = current
        _export_expiry(leaf)
        metrics.CERT_RELOADS.labels("ok").inc()
        log.info("serving certificate reloaded from %s", self.cert)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
