"""The tools the tests drive (helm, promtool, prometheus, flux-ssa), built by ``hack/tools.sh``.

Like the control plane, they come from Go modules into ``$MODELPIN_CACHE`` on
first use; ``MODELPIN_HELM`` / ``MODELPIN_PROMTOOL`` / ``MODELPIN_PROMETHEUS`` /
``MODELPIN_FLUX_SSA`` name prebuilt binaries instead.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "tools.sh"
VERSIONS = REPO / "hack" / "tools-versions.env"
CHART = REPO / "manifests" / "helm" / "modelpin"
FLUX_SSA = REPO / "hack" / "flux-ssa"
_VERSION_KEYS = {
    "helm": "HELM_VERSION",
    "promtool": "PROMETHEUS_VERSION",
    "prometheus": "PROMETHEUS_VERSION",
    "flux-ssa": "FLUX_SSA_VERSION",
}
_VERSION_OVERRIDES = {
    "helm": "MODELPIN_HELM_VERSION",
    "promtool": "MODELPIN_PROMETHEUS_VERSION",
    "prometheus": "MODELPIN_PROMETHEUS_VERSION",
}


def _pinned(key: str) -> str:
    for line in VERSIONS.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    raise KeyError(f"{key} not in {VERSIONS}")


def _flux_ssa_hash() -> str:
    # hack/tools.sh names the build by the same hash, so an edited program is rebuilt, not reused.
    sources = b"".join((FLUX_SSA / f).read_bytes() for f in ("main.go", "go.mod", "go.sum"))
    return hashlib.sha256(sources).hexdigest()[:12]


@functools.cache
def tool(name: str) -> Path:
    """The path of a pinned tool, built first if it is missing."""
    if prebuilt := os.environ.get(f"MODELPIN_{name.upper().replace('-', '_')}"):
        return Path(prebuilt)
    override = _VERSION_OVERRIDES.get(name)
    version = (override and os.environ.get(override)) or _pinned(_VERSION_KEYS[name])
    if name == "flux-ssa":
        version = f"{version}-{_flux_ssa_hash()}"
    root = Path(os.environ.get("MODELPIN_CACHE", Path.home() / ".cache" / "modelpin")) / "tools"
    binary = root / f"{name}-{version}" / name
    if not binary.is_file():
        # Idempotent and serialised by a lock: concurrent callers wait for one build.
        build = subprocess.run(
            ["bash", str(BUILD_SCRIPT), name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if build.returncode != 0:
            raise RuntimeError(f"{BUILD_SCRIPT} {name} failed with {build.returncode}:\n{build.stdout[-6000:]}")
    return binary


def run(
    name: str, *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    argv: Sequence[str] = [str(tool(name)), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


class Helm:
    """helm against one kubeconfig, with its cache, config and data in a directory of its own."""

    def __init__(self, home: Path, kubeconfig: Path | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)

    def __call__(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return run("helm", *args, env=self.env, check=check, timeout=timeout)
