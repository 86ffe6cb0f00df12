"""README's tour, run as written against ``python -m webhook.tools.demo`` (what ``make demo`` starts)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tour_commands() -> str:
    """The first ``sh`` block under README's tour heading: the test runs what the reader reads."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A tour on this machine", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README's tour has no sh block"
    return match.group(1)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """The demo started in a folder of its own, with the repository's examples beside it."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    log = (tmp_path / "demo.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook.tools.demo", "up", "--dir", "modelpin-demo"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready:"):
                break
        assert lines and lines[-1].startswith("ready:"), (
            f"the demo did not come up: {''.join(lines)}\n{(tmp_path / 'demo.err').read_text()[-3000:]}"
        )
        assert lines[0] == f"KUBECONFIG={tmp_path / 'modelpin-demo' / 'kubeconfig'}\n"
        assert "source modelpin-demo/env.sh" in lines[-1]
        yield tmp_path, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def test_the_readme_tour_runs_as_written(demo: tuple[Path, subprocess.Popen[str]]) -> None:
    workdir, proc = demo
    # a fresh shell without the test's own PATH to the venv: env.sh must provide modelpin and python
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    script = "set -euo pipefail\n" + tour_commands()
    tour = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=240)
    assert tour.returncode == 0, f"stdout:\n{tour.stdout}\nstderr:\n{tour.stderr}"
    out = tour.stdout
    assert "storageUri: models:/iris@champion" in out
    assert "s3://modelpin-demo/iris/1\n" in out  # stored resolved, version 1
    assert "iris@champion -> version 2" in out
    assert "condition met" in out  # the object followed the alias to version 2
    assert "no drift" in out
    (row,) = [line for line in out.splitlines() if line.startswith("inferenceservice/iris")]
    assert row.split()[1:5] == ["iris", "2", "2", "current"], row

    # Ctrl-C stops everything the demo started
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    left = subprocess.run(["pgrep", "-f", str(workdir / "modelpin-demo")], capture_output=True, text=True)
    assert left.stdout == "", f"processes left running: {left.stdout}"
