"""Credentials found as kubectl finds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from webhook.ops.credentials import CredentialsError, kubeconfig_paths, load


def kubeconfig(path: Path) -> Path:
    cluster = {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "alice", "user": {"token": "t"}}, {"name": "bob", "user": {"token": "u"}}],
                "contexts": [
                    {"name": "prod", "context": {"cluster": "c", "user": "alice", "namespace": "prod"}},
                    {"name": "dev", "context": {"cluster": "c", "user": "bob"}},
                ],
                "current-context": "prod",
            }
        )
    )
    return path


async def test_the_current_context_gives_namespace_and_user(tmp_path: Path) -> None:
    creds = await load(str(kubeconfig(tmp_path / "config")), None)
    assert (creds.namespace, creds.user, creds.configuration.host) == ("prod", "alice", "https://127.0.0.1:6443")


async def test_context_flag_picks_another_and_namespace_defaults(tmp_path: Path) -> None:
    creds = await load(str(kubeconfig(tmp_path / "config")), "dev")
    assert (creds.namespace, creds.user) == ("default", "bob")


async def test_missing_or_unknown_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="not found"):
        await load(str(tmp_path / "absent"), None)
    with pytest.raises(CredentialsError, match="kubeconfig"):
        await load(str(kubeconfig(tmp_path / "config")), "nope")


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert kubeconfig_paths(None) is None
    kubeconfig((tmp_path / ".kube").mkdir() or tmp_path / ".kube" / "config")
    assert kubeconfig_paths(None) == str(tmp_path / ".kube" / "config")
    monkeypatch.setenv("KUBECONFIG", "/a:/b")
    assert kubeconfig_paths(None) == "/a:/b"
    assert kubeconfig_paths("/flag") == "/flag"
