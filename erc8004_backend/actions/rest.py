"""Signed webhooks (`rest` actions).

Every request carries, besides the configured headers:

- `Idempotency-Key`: the same for every attempt of one (event, trigger, action); receivers
  keep the keys they have processed and ignore a repeat;
- `X-ERC8004-Timestamp`: Unix seconds when the attempt was signed;
- `X-ERC8004-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the trigger's webhook
  secret (its UTF-8 bytes), of `<timestamp>.<body>` (the body's exact bytes; empty for none).

A receiver verifies with the secret it was shown, comparing in constant time, and refuses
timestamps more than a few minutes old so that a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import psycopg
from yarl import URL

from erc8004_backend.actions.configs import RestConfig, render_json_template
from erc8004_backend.actions.delivery import DeliveryFailed, Job, excerpt, retryable_status
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import EncryptionError, Sealed, SecretBox
from erc8004_backend.outbound import ResponseTooLargeError, read_capped, refusal
from erc8004_backend.retry import parse_retry_after
from erc8004_backend.triggers.templates import render_template

QUERIES = load_queries("erc8004_backend.actions", "rest.sql")

SIGNATURE_HEADER = "X-ERC8004-Signature"
TIMESTAMP_HEADER = "X-ERC8004-Timestamp"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (our tests do it too)."""
    if not timestamp.isdigit():
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header)


def webhook_body(config: RestConfig, job: Job) -> bytes:
    """The body template with its strings rendered (valid JSON whatever the values hold);
    without a template, the whole job document."""
    if config.method == "GET":
        return b""
    if config.body_template is None:
        document = {
            **job.payload,
            "trigger": {"id": job.trigger_id, "name": job.trigger_name},
            "idempotency_key": job.idempotency_key,
        }
        return orjson.dumps(document)
    return orjson.dumps(render_json_template(config.body_template, job.values))


def webhook_request(
    config: RestConfig, job: Job, *, secret: str, timestamp: int
) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of an attempt (pure)."""
    url = render_template(config.url, job.values, _url_component)
    body = webhook_body(config, job)
    headers = {
        **config.headers,
        "Idempotency-Key": job.idempotency_key,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    if body:
        headers.setdefault("Content-Type", "application/json")
    return url, headers, body


def _url_component(value: str) -> str:
    """A value made one opaque piece of a URL: every reserved character percent-encoded,
    dots too, so that "." or ".." cannot become a path segment that climbs."""
    return quote(value, safe="").replace(".", "%2E")


def open_webhook_secret(job: Job, box: SecretBox) -> str:
    if job.webhook_secret is None or job.webhook_secret_key_id is None:
        raise DeliveryFailed(
            f"trigger {job.trigger_id} has no webhook secret to sign with"
            f" (create one: erc8004 triggers webhook-secret {job.trigger_id})",
            retryable=False,
        )
    try:
        return box.open(
            Sealed(job.webhook_secret, job.webhook_secret_key_id),
            webhook_secret_context(job.trigger_id),
        )
    except EncryptionError as error:
        raise DeliveryFailed(
            f"the webhook secret of trigger {job.trigger_id} cannot be read: {error}",
            retryable=False,
        ) from None


async def deliver_rest(
    config: RestConfig,
    job: Job,
    *,
    session: aiohttp.ClientSession,
    secret: str,
    timestamp: int,
    response_max_bytes: int,
) -> dict[str, Any]:
    url, headers, body = webhook_request(config, job, secret=secret, timestamp=timestamp)
    try:
        async with session.request(
            config.method,
            URL(url, encoded=True),  # as rendered: no normalising away of encoded dots
            headers=headers,
            data=body or None,
            timeout=aiohttp.ClientTimeout(total=config.timeout_ms / 1000),
            max_redirects=5,
        ) as response:
            try:
                kept = excerpt(await read_capped(response, response_max_bytes))
            except ResponseTooLargeError as error:
                kept = f"(not kept: {error})"
    except TimeoutError:
        raise DeliveryFailed(f"no answer within {config.timeout_ms} ms", retryable=True) from None
    except aiohttp.TooManyRedirects:
        raise DeliveryFailed(
            f"{_host(url)} redirected more than 5 times", retryable=False
        ) from None
    except (aiohttp.InvalidURL, ValueError) as error:
        raise DeliveryFailed(f"invalid webhook URL: {error}", retryable=False) from None
    except aiohttp.ClientError as error:
        refused = refusal(error)
        if refused:
            raise DeliveryFailed(
                f"refused to send to {_host(url)}: {refused}"
                " (ERC8004_ALLOW_PRIVATE_URLS=true or ERC8004_ALLOWED_NETWORKS allow it)",
                retryable=False,
            ) from None
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise DeliveryFailed(f"cannot reach {_host(url)}: {reason}", retryable=True) from None
    record = {"status": response.status, "body": kept}
    if 200 <= response.status < 300:
        return record
    raise DeliveryFailed(
        f"{_host(url)} answered HTTP {response.status}",
        retryable=retryable_status(response.status),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        response=record,
    )


def _host(url: str) -> str:
    """Scheme, host and port: paths and queries may carry credentials, and stay out of
    errors and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the webhook URL"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


# -- secrets ------------------------------------------------------------------------------


def webhook_secret_context(trigger_id: str) -> str:
    """Associated data of a trigger's webhook secret: it decrypts only on its own row."""
    return f"trigger:{trigger_id}"


async def rotate_webhook_secret(
    conn: psycopg.AsyncConnection[Any], trigger_id: str, box: SecretBox
) -> str | None:
    """A new secret for the trigger, stored encrypted; returned once, for its owner to see.
    None when there is no such trigger."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    sealed = box.seal(secret, webhook_secret_context(trigger_id))
    cursor = await conn.execute(
        QUERIES["set_webhook_secret"],
        {"trigger_id": trigger_id, "secret": sealed.ciphertext, "key_id": sealed.key_id},
    )
    return secret if await cursor.fetchone() else None
