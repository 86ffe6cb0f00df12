"""The command's own checks, before anything is served."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.cli import cleartext_credentials, main, program_name
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


def test_kubectl_runs_the_plugin_under_its_own_name() -> None:
    assert program_name("/usr/local/bin/kubectl-modelpin") == "kubectl modelpin"
    assert program_name("/venv/bin/modelpin") == "modelpin"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hold", "pod/x", "--reason", "r"], "unknown kind 'pod'"),
        (["hold", "isvc/x", "--reason", "r", "--for", "3x"], "invalid duration"),
        (["hold", "isvc/x", "--reason", "r", "--previous", "--version", "3"], "not allowed with argument"),
        (["status", "-A", "-n", "prod"], "not allowed with argument"),
        (["status", "--state", "sleepy"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_and_say_why(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_kubeconfig_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["release", "isvc/x", "--kubeconfig", str(tmp_path / "absent")]) == 2
    assert f"kubeconfig {tmp_path / 'absent'} not found" in capsys.readouterr().err


def test_until_in_the_past_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hold", "isvc/x", "--reason", "r", "--until", "2020-01-01T00:00:00Z"]) == 2
    assert "not in the future" in capsys.readouterr().err
