"""The command's own checks, before anything is served."""

from __future__ import annotations

import pytest

from webhook.cli import cleartext_credentials
from webhook.config import Settings


def test_credentials_over_plain_http_are_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "t")
    settings = Settings(
        registries={
            "plain": {"tracking_uri": "http://mlflow:5000", "token_env": "TOKEN"},
            "secure": {"tracking_uri": "https://mlflow:5000", "token_env": "TOKEN"},
            "anonymous": {"tracking_uri": "http://mlflow:5000"},
        }
    )
    warnings = cleartext_credentials(settings)
    assert len(warnings) == 1 and "'plain'" in warnings[0]
