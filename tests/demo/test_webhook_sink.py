"""The local webhook receiver: what it records, and its verdict on signatures, checked against
the signing code of the `rest` action itself."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from erc8004_backend.actions.rest import signature
from erc8004_backend.demo.webhook_sink import ReceivedWebhook, WebhookReceiver

SECRET = "whsec_test-secret"
BODY = b'{"agent": "7", "score": "30"}'


def signed(body: bytes = BODY, secret: str = SECRET, at: float | None = None,
           key: str = "k1") -> dict[str, str]:  # fmt: skip
    timestamp = int(time.time() if at is None else at)
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "X-ERC8004-Timestamp": str(timestamp),
        "X-ERC8004-Signature": signature(secret, timestamp, body),
    }


async def post(
    receiver: WebhookReceiver, headers: dict[str, str], body: bytes = BODY, path: str = "/hook"
) -> httpx.Response:
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://sink") as client:
        return await client.post(path, content=body, headers=headers)


async def test_a_signed_webhook_is_recorded_checked_and_answered() -> None:
    seen: list[ReceivedWebhook] = []
    receiver = WebhookReceiver([SECRET], on_receive=seen.append)
    response = await post(receiver, signed(), path="/hooks/low-score")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    (webhook,) = receiver.received
    assert seen == [webhook]
    assert webhook.path == "/hooks/low-score"
    assert webhook.method == "POST"
    assert webhook.body == BODY
    assert webhook.json() == {"agent": "7", "score": "30"}
    assert webhook.headers["idempotency-key"] == "k1"  # names are lowercase
    assert webhook.signature_ok is True
    assert webhook.verdict == "valid"
    assert webhook.idempotency_key == "k1"
    assert not webhook.repeat
    assert abs(webhook.received_at - time.time()) < 5


async def test_without_secrets_signatures_are_not_checked() -> None:
    receiver = WebhookReceiver()
    await post(receiver, signed(secret="anything"))
    (webhook,) = receiver.received
    assert webhook.signature_ok is None
    assert webhook.verdict.startswith("not checked")


# Built when the test runs, not at collection: a long suite would age the timestamps.
HeadersFactory = Callable[[], dict[str, str]]


@pytest.mark.parametrize(
    ("make_headers", "problem"),
    [
        (lambda: signed(secret="whsec_another"), "matches none of the secrets"),
        (lambda: signed(body=b'{"agent": "8"}'), "matches none of the secrets"),  # body changed
        (lambda: signed(at=time.time() - 600), "s ago (a replay?"),
        (lambda: signed(at=time.time() + 600), "s in the future"),
        (lambda: {**signed(), "X-ERC8004-Timestamp": "yesterday"}, "not Unix seconds"),
        (lambda: {"Idempotency-Key": "k1"}, "no X-ERC8004-Timestamp header"),
        (lambda: {"X-ERC8004-Timestamp": "1"}, "no X-ERC8004-Signature header"),
    ],
)
async def test_a_wrong_stale_or_missing_signature_is_invalid_and_says_why(
    make_headers: HeadersFactory, problem: str
) -> None:
    headers = make_headers()
    receiver = WebhookReceiver([SECRET])
    response = await post(receiver, headers)
    assert response.status_code == 200  # a sink shows everything; the verdict is recorded
    (webhook,) = receiver.received
    assert webhook.signature_ok is False
    assert webhook.signature_error is not None
    assert problem in webhook.signature_error
    assert webhook.verdict == f"INVALID: {webhook.signature_error}"


async def test_any_of_several_secrets_and_secrets_added_later_verify() -> None:
    receiver = WebhookReceiver(["whsec_one", "whsec_two"])
    await post(receiver, signed(secret="whsec_two"))
    await post(receiver, signed(secret="whsec_three", key="k2"))
    receiver.secrets.add("whsec_three")
    await post(receiver, signed(secret="whsec_three", key="k3"))
    assert [w.signature_ok for w in receiver.received] == [True, False, True]


async def test_a_key_seen_before_is_a_repeat_unless_the_first_was_forged() -> None:
    receiver = WebhookReceiver([SECRET])
    await post(receiver, signed(secret="whsec_forged", key="a"))  # does not claim the key
    await post(receiver, signed(key="a"))
    await post(receiver, signed(key="a"))  # a retry after a lost answer
    await post(receiver, signed(key="b"))
    await post(receiver, {"Content-Type": "application/json"})  # no key at all
    assert [w.repeat for w in receiver.received] == [False, False, True, False, False]
    assert receiver.received[-1].idempotency_key is None


async def test_bodies_that_are_not_json_or_too_large() -> None:
    receiver = WebhookReceiver(max_body_bytes=10)
    assert (await post(receiver, {}, body=b"plain text")).status_code == 200
    assert receiver.received[0].body == b"plain text"
    with pytest.raises(ValueError, match="Expecting value"):
        receiver.received[0].json()
    assert (await post(receiver, {}, body=b"x" * 11)).status_code == 413
    assert len(receiver.received) == 1
