"""requirements.lock (what the image installs, with --require-hashes) matches pyproject.toml.

No network: the lock must pin every dependency and build requirement of
pyproject.toml to a version its specifier allows, with hashes. hack/lock.sh
regenerates it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)")


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes)"""
    entries: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            entries[current] = (Version(match.group(2)), [])
        elif current and "--hash=sha256:" in line:
            entries[current][1].append(line.split("--hash=sha256:")[1].split()[0])
        elif line.strip() and not line.lstrip().startswith("#"):
            current = None
    return entries


def wanted() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in (*project["project"]["dependencies"], *project["build-system"]["requires"])]


def test_every_dependency_is_pinned_within_its_specifier() -> None:
    lock = locked()
    for requirement in wanted():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement} is not in requirements.lock: run hack/lock.sh"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside pyproject.toml's {requirement}: run hack/lock.sh"
        )


def test_every_pin_has_hashes() -> None:
    lock = locked()
    assert len(lock) > 10
    for name, (_, hashes) in lock.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_dockerfile_installs_from_the_lock_with_hashes_on_a_pinned_base() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    bases = re.findall(r"^FROM (\S+)", dockerfile, flags=re.M)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases), bases
