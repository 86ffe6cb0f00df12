"""Request bodies read within a byte limit, for both apps' POST endpoints."""

from __future__ import annotations

from starlette.requests import Request


class TooLarge(Exception):
    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(
            f"body of {declared} bytes exceeds the {limit}-byte limit"
            if declared is not None
            else f"body exceeds the {limit}-byte limit"
        )


async def read_within(request: Request, limit: int) -> bytes:
    """The body, or ``TooLarge`` as soon as it is known to exceed ``limit`` bytes."""
    length = b""
    framed = True
    # The raw ASGI header list (names arrive lower-cased): a Headers mapping costs more than this scan.
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            framed = False  # chunks decide the length, whatever Content-Length says
    if length.isdigit():
        if int(length) > limit:
            raise TooLarge(limit, int(length))
        if framed:
            # the server frames the body by Content-Length: it cannot grow past it
            return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
