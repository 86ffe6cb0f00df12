from __future__ import annotations

import json

import pytest

from webhook.reconcile.deliveries import DELIVERY_ID, SIGNATURE, TIMESTAMP, Malformed, Refused, Verifier, sign

SECRET = "s3cret"
NOW = 1_800_000_000


def delivery(body: bytes, delivery_id: str = "d1", ts: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return {DELIVERY_ID: delivery_id, TIMESTAMP: str(ts), SIGNATURE: sign(secret, delivery_id, str(ts), body)}


BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "iris demo1", "alias": "champion", "version": "4"},
    }
).encode()


def verifier() -> Verifier:
    return Verifier(SECRET, clock=lambda: float(NOW))


def test_signature_matches_mlflows_scheme() -> None:
    # HMAC-SHA256 over "<id>.<ts>.<body>", base64, "v1," prefix (MLflow's webhook delivery)
    import base64
    import hashlib
    import hmac

    digest = hmac.new(b"k", b"id.1.{}", hashlib.sha256).digest()
    assert sign("k", "id", "1", b"{}") == "v1," + base64.b64encode(digest).decode()


def test_valid_delivery_gives_the_change() -> None:
    change = verifier().verify(delivery(BODY), BODY)
    assert change is not None
    assert (change.entity, change.action, change.model, change.timestamp_ms) == (
        "model_version_alias",
        "created",
        "iris demo1",
        NOW * 1000,
    )


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        (delivery(BODY, secret="other"), "signature"),
        (delivery(BODY, ts=NOW - 301), "timestamp"),
        (delivery(BODY, ts=NOW + 301), "timestamp"),
        ({DELIVERY_ID: "d1", TIMESTAMP: str(NOW)}, "missing"),
    ],
)
def test_refusals(headers: dict[str, str], needle: str) -> None:
    with pytest.raises(Refused, match=needle):
        verifier().verify(headers, BODY)


def test_tampered_body_is_refused() -> None:
    with pytest.raises(Refused, match="signature"):
        verifier().verify(delivery(BODY), BODY.replace(b"4", b"5"))


def test_replay_is_refused() -> None:
    v = verifier()
    v.verify(delivery(BODY), BODY)
    with pytest.raises(Refused, match="already"):
        v.verify(delivery(BODY), BODY)


def test_a_standby_checks_but_does_not_spend_the_delivery_id() -> None:
    # MLflow retries the standby's 503 with the same id; the leader (or this replica,
    # once it leads) must still accept it
    v = verifier()
    assert v.verify(delivery(BODY), BODY, remember=False) is not None
    assert v.verify(delivery(BODY), BODY) is not None
    with pytest.raises(Refused, match="already"):
        v.verify(delivery(BODY), BODY, remember=False)
    with pytest.raises(Refused, match="signature"):
        v.verify(delivery(BODY, delivery_id="d2", secret="other"), BODY, remember=False)


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"entity": "model_version", "action": "created", "data": 3}']
)
def test_a_genuine_delivery_that_is_not_an_event_object_is_malformed(body: bytes) -> None:
    with pytest.raises(Malformed):
        verifier().verify(delivery(body), body)


@pytest.mark.parametrize(
    ("body", "message"), [(b"not json", r"^body is not JSON: \S"), (b"[1, 2]", r"^body is not a JSON object$")]
)
def test_a_body_that_is_not_a_json_object_is_named_so(body: bytes, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        verifier().verify(delivery(body), body)


def test_events_modelpin_ignores() -> None:
    body = json.dumps({"entity": "prompt", "action": "created", "data": {"name": "p"}}).encode()
    assert verifier().verify(delivery(body), body) is None


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError):
        Verifier("")


def test_a_timestamp_far_in_the_future_is_refused() -> None:
    v = verifier()
    v.verify(delivery(BODY, "near", ts=NOW + 30), BODY)  # clock skew within a minute passes
    with pytest.raises(Refused, match="future"):
        v.verify(delivery(BODY, "far", ts=NOW + 3600), BODY)


def test_an_id_is_remembered_until_a_replay_could_no_longer_be_fresh() -> None:
    now = [float(NOW)]
    v = Verifier(SECRET, max_age_seconds=300, clock=lambda: now[0])
    v.verify(delivery(BODY, "early", ts=NOW + 50), BODY)  # sent "in the future": fresh until NOW + 350
    now[0] = NOW + 340
    with pytest.raises(Refused, match="already"):
        v.verify(delivery(BODY, "early", ts=NOW + 50), BODY)
    now[0] = NOW + 351
    with pytest.raises(Refused, match="old"):  # now refused as stale, and no longer held in memory
        v.verify(delivery(BODY, "early", ts=NOW + 50), BODY)
    assert v.remembered() == 0


def test_headers_are_judged_before_the_body() -> None:
    v = verifier()
    with pytest.raises(Refused, match="missing"):
        v.check_headers({})
    assert v.check_headers(delivery(BODY)).sent == NOW
