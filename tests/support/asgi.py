"""ASGI scopes as uvicorn builds them, for calling an app without a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def post_scope(
    path: str, headers: Sequence[tuple[bytes, bytes]], client: tuple[str, int] = ("127.0.0.1", 1)
) -> dict[str, Any]:
    """An HTTPS POST to ``path`` over HTTP/1.1 from ``client``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": client,
        "server": ("modelpin.test", 443),
    }
