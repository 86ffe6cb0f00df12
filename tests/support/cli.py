"""The ``modelpin`` command run as a user runs it: a child process of the test's Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def modelpin(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd
    )
