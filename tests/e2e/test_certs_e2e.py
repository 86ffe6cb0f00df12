"""certs/: what ``modelpin certs`` writes there by default, kept out of git, and fed to the self-signed overlay."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.controlplane import ensure_binaries
from tests.support.tools import REPO

GENERATED = ("ca.crt", "ca.key", "tls.crt", "tls.key")


def test_modelpin_certs_writes_certs_dir_by_default(tmp_path: Path) -> None:
    overlay = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", overlay)
    self_signed = overlay / "overlays" / "self-signed"
    # As the READMEs say: from the repository root, no --out.
    subprocess.run(
        [sys.executable, "-m", "webhook", "certs", "--kustomize", str(self_signed)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    certs = tmp_path / "certs"
    assert sorted(p.name for p in certs.iterdir()) == sorted(GENERATED)
    assert all((certs / key).stat().st_mode & 0o077 == 0 for key in ("ca.key", "tls.key"))
    # The overlay's Secret and caBundle are the files in certs/.
    rendered = subprocess.run(
        [str(ensure_binaries() / "kubectl"), "kustomize", str(self_signed)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    (mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    for key in ("tls.crt", "tls.key", "ca.crt"):
        assert base64.b64decode(secret["data"][key]) == (certs / key).read_bytes()
    assert base64.b64decode(mwc["webhooks"][0]["clientConfig"]["caBundle"]) == (certs / "ca.crt").read_bytes()


def test_generated_files_are_ignored_by_git() -> None:
    paths = [f"certs/{name}" for name in (*GENERATED, "ca.pem", "secret.yaml")]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == paths
    kept = subprocess.run(["git", "check-ignore", "certs/README.md"], cwd=REPO, capture_output=True, text=True)
    assert kept.returncode == 1  # not ignored
