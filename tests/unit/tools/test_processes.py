"""webhook.tools.processes with real short-lived children (python -c), no fakes."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from webhook.tools.processes import Process, free_port

PY = sys.executable


def _gone(pid: int) -> bool:
    """True once ``pid`` has ended (a zombie waiting for init to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


# A worker that ignores SIGTERM (only the group's SIGKILL ends it).
WORKER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
# Starts the worker, writes its pid to the log, then waits (ignoring SIGTERM when "stubborn") or exits.
FAMILY = f"""
import signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = subprocess.Popen([sys.executable, "-c", {WORKER!r}])
print("worker", worker.pid, flush=True)
if sys.argv[1] != "leader-exits":
    time.sleep(60)
"""


def _worker_pid(proc: Process) -> int:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        for line in proc.tail().splitlines():
            if line.startswith("worker "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no worker pid in the log:\n{proc.tail()}")


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


def test_output_env_and_cwd(tmp_path: Path) -> None:
    script = (
        "import os, sys; print('out', os.environ['PROCS_TEST'], os.getcwd(), 'PATH' in os.environ);"
        " print('err', file=sys.stderr)"
    )
    proc = Process([PY, "-c", script], tmp_path / "child.log", env={"PROCS_TEST": "laid-over"}, cwd=tmp_path)
    assert proc.proc.wait(timeout=30) == 0
    proc.stop()
    log = (tmp_path / "child.log").read_text()
    assert f"out laid-over {tmp_path} True" in log  # laid over the environment, not in place of it
    assert "err" in log


def test_name_of_a_module_and_of_a_program(tmp_path: Path) -> None:
    module = Process([PY, "-m", "json.tool", "--help"], tmp_path / "m.log")
    program = Process([PY, "-c", "pass"], tmp_path / "p.log")
    named = Process([PY, "-c", "pass"], tmp_path / "n.log", name="etcd")
    for proc in (module, program, named):
        proc.proc.wait(timeout=30)
        proc.stop()
    assert module.name == "json.tool --help"
    assert program.name == Path(PY).name
    assert named.name == "etcd"


def test_wait_until_returns_once_ready_and_treats_errors_as_not_yet(tmp_path: Path) -> None:
    proc = Process([PY, "-c", "import time; time.sleep(30)"], tmp_path / "child.log")
    calls = 0

    def ready() -> bool:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("not listening yet")
        return True

    try:
        proc.wait_until(ready, timeout=10)
    finally:
        proc.stop()
    assert calls == 3


def test_exit_before_ready_names_the_process_and_quotes_its_log(tmp_path: Path) -> None:
    script = "import sys; print('line one'); print('bad flag --nope'); sys.exit(3)"
    proc = Process([PY, "-c", script], tmp_path / "child.log", name="kube-apiserver")
    with pytest.raises(RuntimeError) as caught:
        proc.wait_until(lambda: False, timeout=30)
    proc.stop()
    message = str(caught.value)
    assert message.startswith("kube-apiserver exited with 3")
    assert str(tmp_path / "child.log") in message
    assert message.endswith("line one\nbad flag --nope")


def test_deadline_names_what_and_quotes_the_tail(tmp_path: Path) -> None:
    script = "import time\nfor i in range(100): print('starting', i)\ntime.sleep(30)"
    proc = Process([PY, "-c", script], tmp_path / "child.log")
    began = time.monotonic()
    try:
        with pytest.raises(TimeoutError) as caught:
            proc.wait_until(lambda: False, timeout=1.5, what="mlflow server")
    finally:
        proc.stop()
    assert 1.5 <= time.monotonic() - began < 10
    message = str(caught.value)
    assert message.startswith("mlflow server not ready after 1.5s")
    tail = message.split(":\n", 1)[1].splitlines()
    assert tail == [f"starting {i}" for i in range(60, 100)]  # the last 40 lines


def test_stop_ends_the_whole_group(tmp_path: Path) -> None:
    proc = Process([PY, "-c", FAMILY, "plain"], tmp_path / "child.log")
    worker = _worker_pid(proc)
    proc.stop()
    assert proc.proc.returncode is not None
    assert _wait_gone(worker), "the worker outlived stop()"


def test_stop_kills_a_group_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    proc = Process([PY, "-c", FAMILY, "stubborn"], tmp_path / "child.log")
    worker = _worker_pid(proc)
    began = time.monotonic()
    proc.stop(grace=0.5)
    assert 0.5 <= time.monotonic() - began < 10
    assert proc.proc.returncode == -9
    assert _wait_gone(worker)


def test_stop_ends_workers_whose_leader_already_exited(tmp_path: Path) -> None:
    proc = Process([PY, "-c", FAMILY, "leader-exits"], tmp_path / "child.log")
    worker = _worker_pid(proc)
    assert proc.proc.wait(timeout=30) == 0
    assert not _gone(worker)
    proc.stop()
    assert _wait_gone(worker)


def test_stop_twice_is_harmless(tmp_path: Path) -> None:
    proc = Process([PY, "-c", "import time; time.sleep(30)"], tmp_path / "child.log")
    proc.stop()
    proc.stop()
    assert proc.proc.returncode == -15  # SIGTERM, once
    assert proc.tail() == ""  # the log is still readable after its file was closed
