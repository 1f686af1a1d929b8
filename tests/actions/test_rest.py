"""Signed webhooks, pure parts: the signature and the request an attempt sends (the delivery
to a real receiver is in test_worker.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import unquote

import pytest
import yarl
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.actions.channels import parse_action_config
from erc8004_backend.actions.configs import ActionConfigError
from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.actions.rest import (
    RETRACTED_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    OpenedConfigs,
    RestConfig,
    inspected_request,
    seal_credentials,
    signature,
    verify_signature,
    webhook_request,
)
from erc8004_backend.encryption import SecretBox
from tests.support.jobs import feedback_event

SECRET = "whsec_test-secret"
TIMESTAMP = 1_700_000_000
BODY = b'{"agent_id":"42"}'
# HMAC-SHA256 of b'1700000000.{"agent_id":"42"}' under SECRET, computed with openssl:
#   printf '%s' '1700000000.{"agent_id":"42"}' | openssl dgst -sha256 -hmac whsec_test-secret
KNOWN_SIGNATURE = "sha256=63a60218fb9d103dc95847c9b383641030fc5caa6cf64e5050481131dcda1226"


def job(**event: Any) -> Job:
    return Job(
        id=7,
        trigger_id="7f6c3e4a-0000-4000-8000-000000000001",
        trigger_name="Refund requests",
        user_id="7f6c3e4a-0000-4000-8000-000000000002",
        action_id="7f6c3e4a-0000-4000-8000-000000000003",
        action_type="rest",
        config={},
        event_id=1,
        chain_id=31337,
        attempt=1,
        max_attempts=8,
        idempotency_key="3b1f0c9e" * 8,
        payload={
            "event_id": 1,
            "event": feedback_event(1, **event),
            "computed": {"trigger_name": "Refund requests", "count": 3},
        },
    )


def rest_config(**config: Any) -> RestConfig:
    parsed = parse_action_config("rest", config)
    assert isinstance(parsed, RestConfig)
    return parsed


# -- opened configs ----------------------------------------------------------------------

BOX = SecretBox({"k1": bytes(range(32))}, current="k1")


def stored_config(job_: Job, url: str, token: str) -> dict[str, Any]:
    """A rest config as the API stores it: its header's value sealed for the action."""
    config = {"url": url, "headers": {"Authorization": token}}
    return seal_credentials(config, BOX, job_.action_id, None)


def test_an_actions_config_is_opened_once_and_again_when_it_changes() -> None:
    configs = OpenedConfigs(BOX, size=2)
    first = job()
    first = dataclasses.replace(first, config=stored_config(first, "https://a.example/", "t1"))
    opened = configs.open(first)
    assert opened.headers == {"Authorization": "t1"}
    # Another event's job of the same action and config: the same opened config.
    assert configs.open(dataclasses.replace(first, id=8)) is opened
    changed = dataclasses.replace(first, config=stored_config(first, "https://b.example/", "t2"))
    assert (configs.open(changed).url, configs.open(changed).headers) == (
        "https://b.example/", {"Authorization": "t2"})  # fmt: skip
    # At most `size` kept: the least recently used goes first.
    other = dataclasses.replace(first, action_id="7f6c3e4a-0000-4000-8000-000000000009")
    other = dataclasses.replace(other, config=stored_config(other, "https://c.example/", "t3"))
    configs.open(other)
    assert configs.open(first) is not opened  # opened again, as `changed` and `other` came after


def test_a_config_that_does_not_open_is_refused_each_time() -> None:
    configs = OpenedConfigs(BOX)
    broken = job()
    # Sealed for another action: its associated data does not match, so it does not decrypt.
    elsewhere = dataclasses.replace(broken, action_id="7f6c3e4a-0000-4000-8000-00000000000a")
    broken = dataclasses.replace(broken, config=stored_config(elsewhere, "https://a.example/", "t"))
    for _ in range(2):
        with pytest.raises(DeliveryFailed, match="cannot be read"):
            configs.open(broken)


# -- signatures --------------------------------------------------------------------------


def test_signature_of_a_known_vector() -> None:
    independent = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()

    assert signature(SECRET, TIMESTAMP, BODY) == KNOWN_SIGNATURE == f"sha256={independent}"
    assert verify_signature(SECRET, "1700000000", BODY, KNOWN_SIGNATURE)


def test_the_secret_is_used_as_utf8() -> None:
    secret = "whsec_ünïcødé"
    expected = hmac.new(secret.encode("utf-8"), b"1." + BODY, hashlib.sha256).hexdigest()
    assert signature(secret, 1, BODY) == f"sha256={expected}"


def test_an_empty_body_is_signed_too() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000.", hashlib.sha256).hexdigest()
    assert signature(SECRET, TIMESTAMP, b"") == f"sha256={expected}"


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header"),
    [
        (SECRET, "1700000000", b'{"agent_id":"43"}', KNOWN_SIGNATURE),  # body changed
        (SECRET, "1700000000", BODY + b" ", KNOWN_SIGNATURE),  # one byte more
        (SECRET, "1700000001", BODY, KNOWN_SIGNATURE),  # timestamp changed
        ("whsec_other", "1700000000", BODY, KNOWN_SIGNATURE),  # another secret
        (SECRET, "1700000000", BODY, KNOWN_SIGNATURE.removeprefix("sha256=")),
        (SECRET, "1700000000", BODY, KNOWN_SIGNATURE.upper()),
        (SECRET, "1700000000", BODY, ""),
    ],
)
def test_tampered_requests_do_not_verify(
    secret: str, timestamp: str, body: bytes, header: str
) -> None:
    assert not verify_signature(secret, timestamp, body, header)


@pytest.mark.parametrize("timestamp", ["", "-1700000000", "1700000000.0", " 1700000000", "0x10"])
def test_a_timestamp_that_is_not_digits_does_not_verify(timestamp: str) -> None:
    # Even with the signature a receiver would compute for those characters.
    forged = (
        "sha256="
        + hmac.new(SECRET.encode(), f"{timestamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    )
    assert not verify_signature(SECRET, timestamp, BODY, forged)
    assert not verify_signature(SECRET, timestamp, BODY, KNOWN_SIGNATURE)


# -- the request -------------------------------------------------------------------------

EXAMPLE_3 = rest_config(
    method="POST",
    url="https://api.example.com/refund-alerts",
    headers={"Authorization": "Bearer EXAMPLE"},
    timeout_ms=10000,
    body_template={
        "agent_id": "{{agent_id}}",
        "score": "{{score}}",
        "client": "{{client_address}}",
        "file_uri": "{{file_uri}}",
    },
)


def test_the_request_of_example_3() -> None:
    the_job = job(tag1='refund "now"\n', file_uri="ipfs://bafy")

    url, headers, body = webhook_request(EXAMPLE_3, the_job, secret=SECRET, timestamp=TIMESTAMP)

    assert url == "https://api.example.com/refund-alerts"
    assert headers == {
        "Authorization": "Bearer EXAMPLE",
        "Idempotency-Key": the_job.idempotency_key,
        TIMESTAMP_HEADER: "1700000000",
        SIGNATURE_HEADER: signature(SECRET, TIMESTAMP, body),
        "Content-Type": "application/json",
    }
    assert json.loads(body) == {
        "agent_id": "42",
        "score": "45",
        "client": "0x" + "cc" * 20,
        "file_uri": "ipfs://bafy",
    }
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])


@given(value=st.text(max_size=30))
def test_the_signature_covers_the_exact_body_whatever_the_values(value: str) -> None:
    config = rest_config(url="https://api.example.com/hook", body_template={"t": "{{tag1}}"})

    _, headers, body = webhook_request(config, job(tag1=value), secret=SECRET, timestamp=5)

    assert json.loads(body) == {"t": value}
    assert verify_signature(SECRET, "5", body, headers[SIGNATURE_HEADER])
    assert not verify_signature(SECRET, "5", body + b"\n", headers[SIGNATURE_HEADER])


def test_links_to_the_event_on_its_chains_explorer() -> None:
    config = rest_config(url="https://api.example.com/hook",
                         body_template={"tx": "{{transaction_url}}", "block": "{{block_url}}"})  # fmt: skip
    with_explorer = dataclasses.replace(job(), explorer_url="https://basescan.org")
    _, _, body = webhook_request(config, with_explorer, secret=SECRET, timestamp=TIMESTAMP)
    assert json.loads(body) == {"tx": "https://basescan.org/tx/0x" + f"{2:064x}",
                                "block": "https://basescan.org/block/1001"}  # fmt: skip
    _, _, body = webhook_request(config, job(), secret=SECRET, timestamp=TIMESTAMP)
    assert json.loads(body) == {"tx": "", "block": ""}  # a chain without an explorer


def test_filtered_values_in_the_body_and_the_url() -> None:
    """The body stays valid JSON and each URL value one percent-encoded piece, filters or
    not."""
    config = rest_config(
        url="https://api.example.com/agents/{{agent_id}}/{{score|fixed:2}}"
        "?client={{client_address|short}}&tag={{tag2|default:no tag}}",
        body_template={"score": "{{score|fixed:2}}", "at": "{{timestamp|iso}}",
                       "who": "{{client_address|short}} ({{tag1|upper}})",
                       "account": "{{address_url}}"},
    )  # fmt: skip
    the_job = dataclasses.replace(job(score="4.5", tag1='"quoted"', tag2=""),
                                  explorer_url="https://basescan.org")  # fmt: skip

    url, _, body = webhook_request(config, the_job, secret=SECRET, timestamp=TIMESTAMP)

    assert url == (
        "https://api.example.com/agents/42/4%2E50?client=0xcccc%E2%80%A6cccc&tag=no%20tag"
    )
    assert json.loads(body) == {
        "score": "4.50",
        "at": "2026-11-24T12:00:00Z",
        "who": '0xcccc…cccc ("QUOTED")',
        "account": "https://basescan.org/address/0x" + "cc" * 20,
    }


def test_a_configured_content_type_is_kept() -> None:
    config = rest_config(
        url="https://api.example.com/hook",
        headers={"Content-Type": "application/vnd.alerts+json", "X-Team": "ops"},
        body_template={"a": 1},
    )
    _, headers, _ = webhook_request(config, job(), secret=SECRET, timestamp=TIMESTAMP)
    assert headers["Content-Type"] == "application/vnd.alerts+json"
    assert headers["X-Team"] == "ops"


def nested(depth: int) -> Any:
    """A JSON value `depth` containers deep, a template at the bottom."""
    value: Any = "{{agent_id}}"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def test_every_body_template_accepted_can_be_delivered() -> None:
    # The encoder (orjson) refuses values nested more than 254 deep: a template it cannot
    # encode would be stored, then fail every attempt.
    depth = 1
    while True:
        try:
            config = rest_config(url="https://example.com/", body_template=nested(depth))
        except ActionConfigError as error:
            message = str(error)
            break
        _, _, body = webhook_request(config, job(), secret=SECRET, timestamp=TIMESTAMP)
        assert "42" in body.decode()
        depth += 1
    assert 8 < depth < 254
    assert "body_template: nested more than" in message


def test_a_get_has_no_body_and_no_content_type() -> None:
    config = rest_config(
        method="get",
        url="https://api.example.com/agents/{{agent_id}}",
        body_template={"ignored": "{{score}}"},
    )

    url, headers, body = webhook_request(config, job(), secret=SECRET, timestamp=TIMESTAMP)

    assert url == "https://api.example.com/agents/42"
    assert body == b""
    assert "Content-Type" not in headers
    assert headers[SIGNATURE_HEADER] == signature(SECRET, TIMESTAMP, b"")


def test_without_a_body_template_the_whole_job_document_is_sent() -> None:
    the_job = job()
    config = rest_config(url="https://api.example.com/hook")

    _, _, body = webhook_request(config, the_job, secret=SECRET, timestamp=TIMESTAMP)

    assert json.loads(body) == {
        "event_id": 1,
        "event": feedback_event(1),
        "computed": {"trigger_name": "Refund requests", "count": 3},
        "trigger": {"id": the_job.trigger_id, "name": "Refund requests"},
        "idempotency_key": the_job.idempotency_key,
    }


def test_a_retraction_is_the_same_request_marked_retracted() -> None:
    delivered = job()
    retraction = dataclasses.replace(delivered, payload={**delivered.payload, "retracted": True})
    config = rest_config(url="https://api.example.com/hook", notify_retractions=True)

    _, first_headers, first_body = webhook_request(config, delivered, secret=SECRET, timestamp=5)
    _, headers, body = webhook_request(config, retraction, secret=SECRET, timestamp=5)

    assert RETRACTED_HEADER not in first_headers
    assert headers[RETRACTED_HEADER] == "true"
    assert headers["Idempotency-Key"] == first_headers["Idempotency-Key"]
    assert json.loads(body) == {**json.loads(first_body), "retracted": True}
    assert verify_signature(SECRET, "5", body, headers[SIGNATURE_HEADER])
    templated = rest_config(url="https://api.example.com/hook",
                           body_template={"gone": "{{retracted}}", "agent": "{{agent_id}}"})  # fmt: skip
    for the_job, expected in ((delivered, "false"), (retraction, "true")):
        _, _, body = webhook_request(templated, the_job, secret=SECRET, timestamp=5)
        assert json.loads(body) == {"gone": expected, "agent": "42"}


# -- placeholders in the URL -------------------------------------------------------------

PATH_URL = "https://api.example.com/agents/{{tag1}}/feedback?client={{client_address}}"


def sent_target(url: str) -> tuple[str, str, str]:
    """The path and query aiohttp sends for `url` (deliver_rest passes it as rendered,
    `encoded=True`, so that yarl does not normalise it), and the fragment it keeps."""
    parsed = yarl.URL(url, encoded=True)
    return parsed.raw_path, parsed.raw_query_string, parsed.fragment


def test_url_placeholders_cannot_change_the_path_query_or_fragment() -> None:
    config = rest_config(url=PATH_URL)
    value = "../../admin/x?token=1&y=2#frag"

    url, _, _ = webhook_request(config, job(tag1=value), secret=SECRET, timestamp=TIMESTAMP)

    assert url == (
        "https://api.example.com/agents/%2E%2E%2F%2E%2E%2Fadmin%2Fx%3Ftoken%3D1%26y%3D2%23frag"
        "/feedback?client=0x" + "cc" * 20
    )
    path, query, fragment = sent_target(url)
    segments = path.split("/")
    assert segments[:2] == ["", "agents"]
    assert segments[3:] == ["feedback"]
    assert unquote(segments[2]) == value
    assert query == "client=0x" + "cc" * 20
    assert fragment == ""


@given(value=st.text(min_size=1, max_size=30))
def test_any_url_value_stays_one_path_segment(value: str) -> None:
    url, _, _ = webhook_request(
        rest_config(url=PATH_URL), job(tag1=value), secret=SECRET, timestamp=TIMESTAMP
    )

    path, query, fragment = sent_target(url)
    segments = path.split("/")
    assert len(segments) == 4
    assert segments[:2] == ["", "agents"]
    assert segments[3] == "feedback"
    assert unquote(segments[2]) == value
    assert query == "client=0x" + "cc" * 20
    assert fragment == ""


@pytest.mark.parametrize("value", ["..", ".", "%2E%2E"])
def test_a_dot_segment_value_cannot_change_the_path(value: str) -> None:
    # Encoded dots as well: a plain yarl.URL would decode %2E and then resolve "..".
    url, _, _ = webhook_request(
        rest_config(url=PATH_URL), job(tag1=value), secret=SECRET, timestamp=TIMESTAMP
    )
    path, _, _ = sent_target(url)
    segments = path.split("/")
    assert segments[:2] == ["", "agents"]
    assert segments[3:] == ["feedback"]
    assert unquote(segments[2]) == value


@pytest.mark.parametrize(
    "url",
    ["https://api.example.com/a b/{{tag1}}", "https://api.example.com/café?q={{tag1}}&r=é"],
)
def test_a_configured_url_is_sent_as_a_valid_request_target(url: str) -> None:
    try:
        config = rest_config(url=url)
    except ActionConfigError:
        return  # refusing it up front is as good
    rendered, _, _ = webhook_request(config, job(tag1="x"), secret=SECRET, timestamp=TIMESTAMP)
    path, query, _ = sent_target(rendered)
    target = path + "?" + query
    assert target.isascii()
    assert " " not in target


def test_the_request_inspector_masks_credentials_in_headers_and_query() -> None:
    config = RestConfig(url="https://user:pass@hooks.example.com/in?token=abcdefghijklmnop&x",
                        headers={"X-Api-Key": "sk_live_0123456789abcdef"})  # fmt: skip
    shown = inspected_request(config, config.url, {"X-Api-Key": "sk_live_0123456789abcdef",
                                                   "Idempotency-Key": "k1"}, b'{"a":1}')  # fmt: skip
    assert shown == {
        "method": "POST",
        "url": "https://hooks.example.com/in?token=********mnop&x",
        "headers": {"X-Api-Key": "********cdef", "Idempotency-Key": "k1"},
        "body": '{"a":1}',
    }
