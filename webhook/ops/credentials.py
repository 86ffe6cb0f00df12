"""Apiserver credentials found as kubectl finds them.

``--kubeconfig``, else ``$KUBECONFIG`` (a list of files, merged), else
``~/.kube/config``, else the pod's service account. ``--context`` picks a
context. The context's namespace is the default for ``-n``, and its user is
who a hold is recorded as set by.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class CredentialsError(Exception):
    pass


@dataclass(slots=True)
class Credentials:
    configuration: k8s.Configuration
    namespace: str
    user: str  # "" when unknown (in-cluster)


def kubeconfig_paths(flag: str | None) -> str | None:
    """The kubeconfig path list kubectl would read, or None for in-cluster."""
    if flag:
        return flag
    env = os.environ.get("KUBECONFIG")
    if env:
        return env
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None


def _in_cluster(cfg: k8s.Configuration) -> Credentials:
    try:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException as exc:
        raise CredentialsError(
            "no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not running in a pod"
        ) from exc
    ns_file = SERVICE_ACCOUNT_NAMESPACE
    return Credentials(cfg, ns_file.read_text().strip() if ns_file.is_file() else "default", "")


def _any_exists(paths: str) -> bool:
    return any(p and Path(p).expanduser().is_file() for p in paths.split(os.pathsep))


async def load(kubeconfig: str | None, context: str | None) -> Credentials:
    paths = kubeconfig_paths(kubeconfig)
    cfg = k8s.Configuration()
    if paths is None:
        if context:
            raise CredentialsError(f"--context {context}: no kubeconfig found ($KUBECONFIG, ~/.kube/config)")
        return _in_cluster(cfg)
    if not _any_exists(paths):
        raise CredentialsError(f"kubeconfig {paths} not found")
    try:
        loader = await k8s_config.load_kube_config(
            config_file=paths, context=context, client_configuration=cfg, persist_config=False
        )
    except (k8s_config.ConfigException, KeyError, TypeError, ValueError) as exc:
        raise CredentialsError(f"kubeconfig {paths}: {exc}") from exc
    current = loader.current_context or {}
    context_fields = current.get("context") or {}
    namespace, user = context_fields.get("namespace"), context_fields.get("user")
    return Credentials(cfg, str(namespace or "default"), str(user or ""))
