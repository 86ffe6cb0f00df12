"""MLflow webhook deliveries: signature, freshness and replay checks.

MLflow signs ``"<delivery id>.<timestamp>.<raw body>"`` with HMAC-SHA256 and
sends ``X-MLflow-Signature: v1,<base64>``. A delivery is accepted only with a
valid signature, a timestamp within the allowed skew, and an id not seen
before; anything else is refused before it can touch a single object.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.templating.json_objects import NotAnObject, load_object

SIGNATURE = "x-mlflow-signature"
TIMESTAMP = "x-mlflow-timestamp"
DELIVERY_ID = "x-mlflow-delivery-id"
HANDLED = {
    ("model_version_alias", "created"),
    ("model_version_alias", "deleted"),
    ("model_version", "created"),
    ("model_version_tag", "set"),
    ("model_version_tag", "deleted"),
}
EVENTS = [f"{entity}.{action}" for entity, action in sorted(HANDLED)]


class Refused(Exception):
    """Not a genuine, fresh, first delivery: HTTP 401."""


class Malformed(Exception):
    """Genuine, but not a payload modelpin can read: HTTP 400."""


@dataclass(frozen=True, slots=True)
class Change:
    entity: str
    action: str
    model: str
    timestamp_ms: int
    data: Mapping[str, Any]


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class Headers:
    delivery_id: str
    timestamp: str
    signature: str
    sent: int  # seconds since the epoch


class Verifier:
    def __init__(
        self,
        secret: str,
        max_age_seconds: float = 300,
        clock: Callable[[], float] = time.time,
        max_future_seconds: float = 60,
    ) -> None:
        if not secret:
            raise ValueError("an MLflow webhook secret is required")
        self.secret = secret
        self.max_age = max_age_seconds
        self.max_future = max_future_seconds
        self.clock = clock
        # delivery id -> until when a replay of it could still pass the freshness check
        self._seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []

    def check_headers(self, headers: Mapping[str, str]) -> Headers:
        """Everything that can be judged before reading the body: presence, freshness, replay."""
        delivery_id = headers.get(DELIVERY_ID, "")
        timestamp = headers.get(TIMESTAMP, "")
        signature = headers.get(SIGNATURE, "")
        if not delivery_id or not timestamp or not signature:
            raise Refused("missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature")
        try:
            sent = int(timestamp)
        except ValueError as exc:
            raise Refused("timestamp is not a number") from exc
        now = self.clock()
        self._forget(now)
        if now - sent > self.max_age:
            raise Refused(f"timestamp is {now - sent:.0f}s old (allowed: {self.max_age:.0f}s)")
        if sent - now > self.max_future:
            # a far-future timestamp would otherwise stay fresh (and replayable) for longer than max_age
            raise Refused(f"timestamp is {sent - now:.0f}s in the future (allowed: {self.max_future:.0f}s)")
        if delivery_id in self._seen:
            raise Refused(f"delivery {delivery_id} was already received")
        return Headers(delivery_id, timestamp, signature, sent)

    def verify(self, headers: Mapping[str, str], body: bytes, *, remember: bool = True) -> Change | None:
        """The change a delivery announces; None for events modelpin does not act on.

        ``remember=False`` checks everything but does not record the delivery id: a
        standby answers 503 without spending the id, so MLflow's retry can still be
        accepted by the leader (or by this replica once it leads).
        """
        h = self.check_headers(headers)
        expected = sign(self.secret, h.delivery_id, h.timestamp, body)
        if not hmac.compare_digest(expected.encode(), h.signature.encode()):
            raise Refused("signature does not match")
        try:
            payload = load_object(body)
        except NotAnObject as exc:
            raise Malformed(f"body is {exc}") from exc
        if remember:
            # remembered exactly as long as a replay would be fresh enough to pass
            expiry = h.sent + self.max_age
            self._seen[h.delivery_id] = expiry
            heapq.heappush(self._expiries, (expiry, h.delivery_id))
        entity, action = str(payload.get("entity", "")), str(payload.get("action", ""))
        if (entity, action) not in HANDLED:
            return None
        data = payload.get("data") or {}
        if not isinstance(data, dict):
            raise Malformed("data is not a JSON object")
        return Change(entity, action, str(data.get("name", "")), h.sent * 1000, data)

    def _forget(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            expiry, delivery_id = heapq.heappop(self._expiries)
            if self._seen.get(delivery_id) == expiry:
                del self._seen[delivery_id]

    def remembered(self) -> int:
        return len(self._seen)
