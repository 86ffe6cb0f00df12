"""Serving certificate reload without a restart.

cert-manager and kubelet rotate a mounted Secret by swapping files in place.
``SSLContext.load_cert_chain`` on the live context makes every later
handshake use the new pair, so polling the files' identity is enough.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509

from webhook import metrics

log = logging.getLogger("modelpin.tls")


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows the ..data symlink of a mounted Secret
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _export_expiry(cert: Path) -> None:
    """The served leaf's notAfter, for the expiry alert: a rotation that never happens is silent otherwise."""
    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the expiry of %s: %s", cert, exc)
        return
    metrics.CERT_EXPIRY.set(leaf.not_valid_after_utc.timestamp())


class CertReloader:
    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self._seen = (_identity(cert), _identity(key))
        _export_expiry(cert)

    def problems(self) -> list[str]:
        return [f"{p} is missing" for p in (self.cert, self.key) if not p.is_file()]

    def check(self) -> bool:
        """Reload if either file changed; True when a new pair was loaded."""
        current = (_identity(self.cert), _identity(self.key))
        if current == self._seen or None in current:
            return False
        try:
            # Validate the pair on a scratch context first: loading a new cert
            # with the old key into the live context would leave it with no key.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert, self.key)
            self.context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            # A half-rotated pair (new cert, old key) fails here; keep serving
            # the old pair and try again on the next tick.
            metrics.CERT_RELOADS.labels("error").inc()
            log.warning("serving certificate not reloaded: %s", exc)
            return False
        self._seen = current
        _export_expiry(self.cert)
        metrics.CERT_RELOADS.labels("ok").inc()
        log.info("serving certificate reloaded from %s", self.cert)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
