"""A client CA and client certificates, as the apiserver presents to webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webhook.tools import certs


@dataclass(frozen=True)
class ClientPair:
    ca: Path
    cert: Path
    key: Path


def client_pair(directory: Path, cn: str = "kube-apiserver-webhook-client") -> ClientPair:
    """A client CA (kept if ``directory`` has one) and a one-day client certificate (clientAuth) it signed."""
    certs.ensure_ca(directory, f"{cn}-ca")
    cert, key = certs.issue_client(directory, cn, days=1)
    return ClientPair(directory / "ca.crt", cert, key)
