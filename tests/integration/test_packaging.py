"""The Dockerfile's install steps, proven in a clean venv (no Docker engine runs here).

Mirrors the builder stage: a fresh venv, ``pip install .`` of the runtime
dependencies only (no mlflow, no test tools), then the entrypoint.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_dockerfile_install_steps_in_a_clean_venv(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install --no-cache-dir \.", dockerfile), "builder stage installs the project itself"
    assert "USER" in dockerfile and "ENTRYPOINT" in dockerfile
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "*.egg-info", "modelpin-data"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    subprocess.run([*pip, "."], cwd=src, check=True, timeout=600)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "modelpin==" in installed
    for heavy in ("mlflow", "pytest", "mypy", "pandas", "scikit-learn"):
        assert f"\n{heavy}==" not in "\n" + installed, f"{heavy} must not be a runtime dependency"
    help_text = subprocess.run([str(venv / "bin" / "modelpin"), "--help"], capture_output=True, text=True, check=True)
    for command in ("serve", "render", "certs"):
        assert command in help_text.stdout
    certs = subprocess.run(
        [str(venv / "bin" / "modelpin"), "certs", "--out", str(tmp_path / "c")], capture_output=True, text=True
    )
    assert certs.returncode == 0, certs.stderr
    size_mb = dir_size(venv) / 1e6
    print(f"\nruntime venv installed size: {size_mb:.0f} MB")
    assert size_mb < 250
