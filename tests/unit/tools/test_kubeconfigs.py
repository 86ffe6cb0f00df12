from __future__ import annotations

from pathlib import Path

import yaml

from webhook.ops.credentials import load
from webhook.tools.kubeconfigs import write_single_user


async def test_a_token_kubeconfig_loads_as_its_user_on_its_server(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not read until a connection is made")
    path = write_single_user(
        tmp_path / "config", "https://127.0.0.1:6443", ca, {"token": "t0k"}, cluster="e2e", user_name="reconciler"
    )
    creds = await load(str(path), None)
    assert (creds.user, creds.configuration.host) == ("reconciler", "https://127.0.0.1:6443")
    assert "Bearer t0k" in creds.configuration.api_key.values()


def test_certificate_users_name_their_files(tmp_path: Path) -> None:
    user = {"client-certificate": str(tmp_path / "u.crt"), "client-key": str(tmp_path / "u.key")}
    doc = yaml.safe_load(
        write_single_user(
            tmp_path / "config", "https://h:1", tmp_path / "ca.crt", user, cluster="demo", user_name="user"
        ).read_text()
    )
    assert doc["current-context"] == "demo"
    assert doc["contexts"] == [{"name": "demo", "context": {"cluster": "demo", "user": "user"}}]
    assert doc["users"] == [{"name": "user", "user": user}]
    assert doc["clusters"][0]["cluster"] == {"server": "https://h:1", "certificate-authority": str(tmp_path / "ca.crt")}
