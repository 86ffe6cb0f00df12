"""A TCP proxy in front of a real registry that can fail the way registries fail.

Modes: ``pass`` (forward), ``error`` (answer every HTTP request with a 500 and a
configurable body), ``hang`` (accept, read the request, never answer), ``reset``
(read the request, then reset the connection with an RST). ``flap`` cycles
through modes on a timer. Every switch drops the open connections, as a
restarting registry or load balancer does, so pooled keep-alive connections
see the new mode at once.

It counts the HTTP requests that reach it by mode: what the registry, or the
load balancer in front of it, would see.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Sequence

from tests.support.pipes import accepted, drop, listen, pipe

MODES = ("pass", "error", "hang", "reset")
DEFAULT_ERROR_BODY = b'{"error_code": "INTERNAL_ERROR", "message": "injected fault"}'


class FaultyProxy:
    def __init__(self, target_port: int, error_body: bytes = DEFAULT_ERROR_BODY) -> None:
        self.target_port = target_port
        self.error_body = error_body
        self.listener, self.port = listen(256)
        self.mode = "pass"
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._flap_stop: threading.Event | None = None
        threading.Thread(target=self._accept, daemon=True, name="faulty-proxy").start()

    # --- control -------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        self._stop_flapping()
        self._switch(mode)

    def flap(self, cycle: Sequence[tuple[str, float]]) -> None:
        """Cycle through ``(mode, seconds)`` steps until the next ``set_mode``."""
        self._stop_flapping()
        stop = threading.Event()
        self._flap_stop = stop

        def run() -> None:
            while not stop.is_set():
                for mode, seconds in cycle:
                    if stop.is_set():
                        return
                    self._switch(mode)
                    stop.wait(seconds)

        threading.Thread(target=run, daemon=True, name="faulty-proxy-flap").start()

    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def close(self) -> None:
        self._stop_flapping()
        self._drop_all()
        self.listener.close()

    def _stop_flapping(self) -> None:
        if self._flap_stop is not None:
            self._flap_stop.set()
            self._flap_stop = None

    def _switch(self, mode: str) -> None:
        self.mode = mode
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        drop(conns)

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.update(socks)

    def _forget(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)
        conn.close()

    def _count(self, mode: str, n: int = 1) -> None:
        with self._lock:
            self.requests[mode] += n

    # --- serving -------------------------------------------------------------

    def _accept(self) -> None:
        for client in accepted(self.listener):
            mode = self.mode
            self._track(client)
            target = {"pass": self._forward, "error": self._errors, "hang": self._hang, "reset": self._reset}[mode]
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        self._track(upstream)
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        # a request line ends the first line of each request; bodies of
        # registry GETs are empty, so this counts requests closely enough
        pipe(client, upstream, lambda data: self._count("pass", data.count(b" HTTP/1.1\r\n")))

    @staticmethod
    def _read_request(conn: socket.socket) -> bool:
        buffered = b""
        while b"\r\n\r\n" not in buffered:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buffered += chunk
        return True

    def _errors(self, client: socket.socket) -> None:
        head = (
            f"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.error_body)}\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            while self._read_request(client):
                self._count("error")
                client.sendall(head + self.error_body)
        self._forget(client)

    def _hang(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self._read_request(client):
                self._count("hang")
            # held open, never answered, until the mode changes or the peer gives up
            while client.recv(65536):
                pass

    def _reset(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self._read_request(client):
                self._count("reset")
            # linger 0: close() sends an RST instead of a FIN
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._forget(client)
