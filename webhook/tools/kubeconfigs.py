"""Kubeconfig files of one cluster and one user: the demo's, and the test control plane's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def single_user(server: str, ca: Path, user: Mapping[str, str], *, cluster: str, user_name: str) -> dict[str, Any]:
    """A kubeconfig whose current context joins ``cluster`` (at ``server``, trusting ``ca``) and one user.

    ``user`` is the user's credentials as kubeconfig spells them: ``client-certificate`` and
    ``client-key`` paths, or a ``token``.
    """
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user_name, "user": dict(user)}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user_name}}],
        "current-context": cluster,
    }


def write_single_user(
    path: Path, server: str, ca: Path, user: Mapping[str, str], *, cluster: str, user_name: str
) -> Path:
    """``single_user``'s kubeconfig written to ``path``."""
    path.write_text(
        yaml.safe_dump(single_user(server, ca, user, cluster=cluster, user_name=user_name), sort_keys=False)
    )
    return path
