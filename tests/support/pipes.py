"""Plain TCP plumbing the test proxies share: a loopback listener, its connections, a one-way byte pipe."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator


def listen(backlog: int) -> tuple[socket.socket, int]:
    """A socket listening on a free loopback port, and that port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    return listener, int(listener.getsockname()[1])


def accepted(listener: socket.socket) -> Iterator[socket.socket]:
    """Each connection ``listener`` accepts, until it is closed."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:  # closed
            return
        if listener.fileno() == -1:  # closed while this accept waited: too late to serve
            client.close()
            return
        yield client


def drop(conns: Iterable[socket.socket]) -> None:
    """Shut down and close each connection, so that its peer sees it end at once (a close alone may not)."""
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()


def pipe(src: socket.socket, dst: socket.socket, seen: Callable[[bytes], None] | None = None) -> None:
    """Copy ``src`` to ``dst`` until either side ends, then shut both down (so the other direction ends too)."""
    try:
        while data := src.recv(65536):
            if seen is not None:
                seen(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
