"""The Dockerfile, carried out in a clean venv (no Docker engine runs here).

The builder stage's own ENV, WORKDIR, COPY and RUN instructions are executed
in order, with the image's absolute paths (/opt/venv, /src, /tmp/...) mapped
into a temporary directory. The result is then started the way the shipped
Deployment starts the image: its ENTRYPOINT with the container args from
manifests/base/webhook.yaml and the config from the shipped ConfigMap.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.support.reviews import fixture, make_review
from webhook.tools.processes import Process, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#")))
    result: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            result.append([])
        result[-1].append((word.upper(), rest.strip()))
    return result


class Image:
    """Image paths mapped under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, image_path: str) -> str:
        return str(self.root / image_path.lstrip("/"))

    def text(self, command: str) -> str:
        # absolute image paths become paths under root; relative ones are untouched
        return re.sub(r"(?<![\w.])/(opt|src|tmp|etc|tls)(?=/|\b)", lambda m: self.path(m.group(0)), command)


def run_builder(instructions: list[tuple[str, str]], image: Image) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": image.path("/tmp")}
    cwd = image.root
    for word, arg in instructions:
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", arg):
                env[key] = image.text(value).replace("$PATH", env["PATH"])
        elif word == "WORKDIR":
            cwd = Path(image.path(arg))
            cwd.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, target = shlex.split(arg)
            for source in sources:
                src = ROOT / source
                dest = cwd / target / (src.name if target.endswith("/") and not source.endswith("/") else "")
                if src.is_dir():
                    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, dest)
        elif word == "RUN":
            # the base image's python is this interpreter: same version, and what `python` means there
            bin_dir = image.path("/usr/local/bin")
            Path(bin_dir).mkdir(parents=True, exist_ok=True)
            if not Path(bin_dir, "python").exists():
                Path(bin_dir, "python").symlink_to(sys.executable)
            # ... found right after the image's own directories, before the host's
            dirs = env["PATH"].split(":")
            ours = [d for d in dirs if d.startswith(str(image.root))]
            run_env = {**env, "PATH": ":".join([*ours, bin_dir, *(d for d in dirs if d not in ours)])}
            subprocess.run(["bash", "-ec", image.text(arg)], cwd=cwd, env=run_env, check=True, timeout=900)
    return env


def test_the_dockerfile_builds_and_runs_as_deployed(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    builder, runtime = stages(dockerfile)
    image = Image(tmp_path / "image")
    env = run_builder(builder[1:], image)
    venv = Path(image.path("/opt/venv"))

    # only runtime dependencies reach the image
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "modelpin==" in installed
    for heavy in ("mlflow", "pytest", "mypy", "pandas", "scikit-learn"):
        assert f"\n{heavy}==" not in "\n" + installed, f"{heavy} must not be a runtime dependency"
    size_mb = dir_size(venv) / 1e6
    print(f"\nruntime venv installed size: {size_mb:.0f} MB")
    assert size_mb < 250

    # the runtime stage: the venv copied whole, an unprivileged numeric user, modelpin as entrypoint
    runtime_words = dict(runtime)
    assert "--from=builder /opt/venv /opt/venv" in runtime_words["COPY"]
    assert re.fullmatch(r"\d+:\d+", runtime_words["USER"]) and not runtime_words["USER"].startswith("0:")
    entrypoint: list[str] = orjson.loads(runtime_words["ENTRYPOINT"])
    assert entrypoint == ["modelpin"]

    # certificates the way the self-signed overlay makes them, with the image's own modelpin
    tls = Path(image.path("/tls"))
    subprocess.run(
        [str(venv / "bin" / "modelpin"), "certs", "--out", str(tls), "--san", "127.0.0.1"],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
        cwd=tmp_path,
    )
    configmap = yaml.safe_load((ROOT / "manifests" / "base" / "configmap.yaml").read_text())
    config_file = Path(image.path("/etc/modelpin/config.yaml"))
    config_file.parent.mkdir(parents=True)
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["config.yaml"])
    registry = free_port()  # nothing listens: the registry is down
    config["registries"]["mlflow"]["tracking_uri"] = f"http://127.0.0.1:{registry}"
    config["registries"]["mlflow"].pop("token_file", None)
    config_file.write_text(yaml.safe_dump(config))

    deployment = next(
        doc
        for doc in yaml.safe_load_all((ROOT / "manifests" / "base" / "webhook.yaml").read_text())
        if doc and doc["kind"] == "Deployment"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    args = [
        image.text(a).replace("--host=0.0.0.0", "--host=127.0.0.1").replace("--port=8443", f"--port={port}")
        for a in container["args"]
    ]
    container_env = {e["name"]: image.text(e["value"]) for e in container.get("env", []) if "value" in e}
    workdir = Path(image.path(runtime_words.get("WORKDIR", "/")))
    server = Process(
        [str(venv / "bin" / entrypoint[0]), *args],
        tmp_path / "serve.log",
        env={**env, **container_env, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
        cwd=workdir,
    )
    try:
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        url = f"https://127.0.0.1:{port}"
        server.wait_until(lambda: httpx.get(f"{url}/readyz", verify=context).status_code == 200, 60, "modelpin serve")
        body = orjson.dumps(make_review(fixture("isvc-canary.yaml")))
        started = time.monotonic()
        answer = httpx.post(
            f"{url}/mutate", content=body, headers={"Content-Type": "application/json"}, verify=context, timeout=10
        )
        took = time.monotonic() - started
    finally:
        server.stop()
    assert answer.status_code == 200
    response = answer.json()["response"]
    # the registry is down and nothing is cached: refused with the cause, within the lookup deadline
    assert response["allowed"] is False and response["status"]["code"] == 503
    assert "/spec/predictor/model/storageUri" in response["status"]["message"]
    assert took < float(config.get("lookup_deadline_seconds", 2.0)) + 1.5
