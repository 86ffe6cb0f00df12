"""Child processes for the demo and the test harness: each in its own process group, logging to a file.

A server started here often forks workers (uvicorn, mlflow's gunicorn); a group of its own lets
``stop`` end them with the leader instead of leaving them to hold ports and files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

TAIL_LINES = 40


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _name_of(argv: Sequence[str]) -> str:
    # "python -m webhook serve" reads better as "webhook serve" than as the interpreter's path
    if argv[0] == sys.executable and len(argv) > 2 and argv[1] == "-m":
        return " ".join(argv[2:4])
    return Path(argv[0]).name


class Process:
    """One child in its own process group, its stdout and stderr in ``log``, stopped as a group.

    ``env`` is laid over this process's environment. ``name`` (default: the program, or the module
    for ``python -m``) is what readiness errors call it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)  # to start it again as it was
        self.name = name or _name_of(argv)
        self.log = log
        self._log: IO[bytes] = log.open("wb")  # closed in stop()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str | None = None) -> None:
        """Poll ``ready`` (its exceptions count as not yet) until it is true or ``timeout`` seconds pass.

        Raises RuntimeError when the process exits first and TimeoutError at the deadline, both
        naming the process (``what``, default its name) and quoting the tail of its log.
        """
        what = what or self.name
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.proc.returncode}; the end of {self.log}:\n{self.tail()}")
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout:g}s; the end of {self.log}:\n{self.tail()}")

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the log."""
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds; then SIGKILL to any worker left behind."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # the leader is gone but its workers may not be
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
