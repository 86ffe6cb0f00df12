"""A client that drops the connection mid-body is one log line, not a traceback."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.support.asgi import post_scope
from tests.support.fakes import FakeRegistry, make_settings
from webhook.edge.webhook_app import ServerState, create_app
from webhook.registry.resolver import Resolver


@pytest.mark.parametrize("length", [b"100000", None])
async def test_a_client_dropping_mid_body_is_one_line(
    registry: FakeRegistry, caplog: pytest.LogCaptureFixture, length: bytes | None
) -> None:
    resolver = Resolver(make_settings(), {"mlflow": registry})
    app = create_app(ServerState(resolver=resolver))
    headers = [(b"content-type", b"application/json")]
    headers.append((b"content-length", length) if length else (b"transfer-encoding", b"chunked"))
    scope = post_scope("/mutate", headers, client=("10.0.0.9", 5555))
    events = iter([{"type": "http.request", "body": b'{"apiVersion": "adm', "more_body": True}])

    async def receive() -> dict[str, Any]:
        return next(events, {"type": "http.disconnect"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.DEBUG):
        await app(scope, receive, send)
    await resolver.aclose()
    mine = [r for r in caplog.records if r.name == "modelpin"]
    assert [r.getMessage() for r in mine] == ["client 10.0.0.9 disconnected before sending its whole body"]
    assert all(r.exc_info is None for r in caplog.records), [r.getMessage() for r in caplog.records]
