"""A real ``mlflow server`` (sqlite backend, proxied artifacts) on a random loopback port."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx

from webhook.tools.processes import Process, free_port


class MlflowServer:
    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None, trusted_ca: Path | None = None) -> None:
        self.workdir = workdir
        self.trusted_ca = trusted_ca
        extra_env = dict(extra_env or {})
        if trusted_ca is not None:
            extra_env["MODELPIN_TEST_EXTRA_CA"] = str(trusted_ca)
            trust = str(Path(__file__).resolve().parent / "mlflow_trust")
            extra_env["PYTHONPATH"] = os.pathsep.join(p for p in (trust, os.environ.get("PYTHONPATH", "")) if p)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{workdir / 'mlflow.db'}",
                "--artifacts-destination",
                str(workdir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            workdir / "mlflow-server.log",
            # the server caches its webhook list for 60 s by default: a webhook a test
            # registers would get no delivery for up to a minute
            env={"MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true", "MLFLOW_WEBHOOK_CACHE_TTL": "1", **(extra_env or {})},
            cwd=workdir,
        )
        started = time.monotonic()
        try:
            self.process.wait_until(self._healthy, timeout=180, what="mlflow server")
        except BaseException:
            self.process.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def _healthy(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=2).status_code == 200

    def stop(self) -> None:
        self.process.stop()
