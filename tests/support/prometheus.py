"""A real Prometheus (the build ``hack/tools.sh`` makes) scraping exporters on loopback, for rollout analysis tests."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, start_http_server

from tests.support.tools import tool
from webhook.tools.processes import Process, free_port


@contextlib.contextmanager
def serve_metrics(registry: CollectorRegistry) -> Iterator[str]:
    """``registry`` served by prometheus-client's own HTTP server on loopback; yields its ``host:port``."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Prometheus:
    """Prometheus scraping ``targets`` every second as job ``job``, its data and log in ``work``.

    ``lookback_seconds`` shortens the query lookback, so that a changed sample is seen within a
    scrape instead of after the default 5 minutes of staleness. Started and ready when constructed
    (``url`` answers); a context manager that stops it.
    """

    def __init__(
        self,
        work: Path,
        targets: Sequence[str],
        *,
        job: str = "model",
        lookback_seconds: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        config = work / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
                }
            )
        )
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            str(tool("prometheus")),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        if lookback_seconds is not None:
            argv.append(f"--query.lookback-delta={lookback_seconds}s")
        self.process = Process(argv, work / "prometheus.log", name="prometheus")
        try:
            self.process.wait_until(self._ready, timeout)
        except BaseException:
            self.process.stop()
            raise

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        """Idempotent: a test may stop the server before leaving its ``with``."""
        self.process.stop()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
