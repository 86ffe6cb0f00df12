"""Request bodies read within a byte limit, for both apps' POST endpoints."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope


class TooLarge(Exception):
    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(
            f"body of {declared} bytes exceeds the {limit}-byte limit"
            if declared is not None
            else f"body exceeds the {limit}-byte limit"
        )


async def read_within(request: Request, limit: int) -> bytes:
    """The body, or ``TooLarge`` as soon as it is known to exceed ``limit`` bytes."""
    return await receive_within(request.scope, request.receive, limit)


async def receive_within(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body of the ASGI request ``scope``, or ``TooLarge`` as soon as it is known to exceed ``limit``.

    A client that goes away before its whole body came raises starlette's ``ClientDisconnect``.
    """
    # The raw ASGI header list (names arrive lower-cased): a Headers mapping costs more than this scan.
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise TooLarge(limit, int(value))
            break
    # Counted as it arrives whatever Content-Length said: chunked framing decides the length then.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
