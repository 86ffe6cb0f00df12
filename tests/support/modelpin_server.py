"""``modelpin serve`` as a real subprocess over real TLS, verified against a test CA."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from tests.support.catalog import PROXIED_ROOT
from tests.support.reviews import make_review
from webhook.tools import certs
from webhook.tools.processes import Process, free_port


class ModelpinServer:
    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        ca_dir: Path,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        bundle = certs.issue(ca_dir, ["localhost", "127.0.0.1"])
        # each server its own copy of the pair, so rotation tests touch only theirs
        self.cert, self.key = workdir / "tls.crt", workdir / "tls.key"
        self.cert.write_bytes(bundle.cert.read_bytes())
        self.key.write_bytes(bundle.key.read_bytes())
        self.ca = bundle.ca_cert
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.process = Process(
            [
                sys.executable,
                "-m",
                "webhook",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--tls-cert",
                str(self.cert),
                "--tls-key",
                str(self.key),
                "--config",
                str(self.config_path),
                "--log-level",
                "warning",
                *(extra_args or []),
            ],
            workdir / "modelpin.log",
            env=env,
            cwd=workdir,
        )
        self.tls = ssl.create_default_context(cafile=str(self.ca))
        try:
            self.process.wait_until(self._ready, timeout=60, what="modelpin serve")
        except BaseException:
            self.process.stop()
            raise
        self.client = httpx.Client(base_url=self.url, verify=self.tls, timeout=10)

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/readyz", verify=self.tls, timeout=2).status_code == 200

    def review(self, review: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(
            "/mutate", content=orjson.dumps(review), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def metric(self, name: str, **labels: str) -> float:
        text = self.client.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        self.client.close()
        self.process.stop()


def isvc(uri: str, name: str = "x") -> dict[str, Any]:
    """A minimal InferenceService whose predictor model URI is ``uri``."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }


def concurrent_reviews(server: ModelpinServer, obj: dict[str, Any], n: int) -> list[tuple[float, dict[str, Any]]]:
    """``n`` CREATE reviews of ``obj`` sent at once on ``n`` open connections.

    Returns (seconds from the start of the burst to this answer, answer) per review. The
    connections are opened first, so the burst measures admission, not TLS handshakes.
    """

    async def burst() -> list[tuple[float, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=server.url, verify=server.tls, timeout=60, limits=limits) as client:
            await asyncio.gather(*(client.get("/healthz") for _ in range(n)))
            started = time.perf_counter()

            async def one() -> tuple[float, dict[str, Any]]:
                body = orjson.dumps(make_review(obj))
                r = await client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
                return time.perf_counter() - started, dict(r.json())

            return list(await asyncio.gather(*(one() for _ in range(n))))

    return asyncio.run(burst())


def modelpin_config(tracking_uri: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "default_selector": "@champion",
        "registries": {
            "mlflow": {"tracking_uri": tracking_uri, "artifact_roots": {"mlflow-artifacts:/": PROXIED_ROOT}},
        },
        "profiles": {"modelcar": "oci://quay.io/rhoai/{name}:{tags[git_commit]}"},
        "namespaces": {
            "restricted": {"models": ["fraud*"], "registries": ["mlflow"]},
            "staging": {"default_selector": "/Staging"},
            "nodefault": {},
        },
        "cache": {"pinned_ttl_seconds": 3600, "floating_ttl_seconds": 30, "max_stale_seconds": 600},
        "lookup_deadline_seconds": 2.0,
    }
    config.update(overrides)
    return config


def post_as(server: ModelpinServer, obj: dict[str, Any], client_cert: tuple[str, str] | None) -> httpx.Response:
    """POST a review of ``obj`` to /mutate on a new connection, presenting ``client_cert`` (cert, key) if given."""
    context = ssl.create_default_context(cafile=str(server.ca))
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    body = orjson.dumps(make_review(obj))
    with httpx.Client(base_url=server.url, verify=context, timeout=10) as client:
        return client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
