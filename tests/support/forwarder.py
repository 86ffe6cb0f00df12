"""A TCP forwarder that can be cut: the registry 'goes down' while it stays real."""

from __future__ import annotations

import socket
import threading

from tests.support.pipes import accepted, drop, listen, pipe


class Forwarder:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener, self.port = listen(64)
        self.up = threading.Event()
        self.up.set()
        self.hanging = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for client in accepted(self.listener):
            if not self.up.is_set():
                if self.hanging:
                    with self._lock:
                        self._conns.append(client)  # held open, never answered
                else:
                    client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self.up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        drop(conns)

    def hang(self) -> None:
        """Accept connections and never answer: a registry that stalls."""
        self.hanging = True
        self.cut()

    def restore(self) -> None:
        self.hanging = False
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()
