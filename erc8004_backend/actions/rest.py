"""Signed webhooks (`rest` actions).

Every request carries, besides the configured headers:

- `Idempotency-Key`: the same for every attempt of one (event, trigger, action); receivers
  keep the keys they have processed and ignore a repeat;
- `X-ERC8004-Timestamp`: Unix seconds when the attempt was signed;
- `X-ERC8004-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the trigger's webhook
  secret (its UTF-8 bytes), of `<timestamp>.<body>` (the body's exact bytes; empty for none).

A retraction (an action with `notify_retractions`, after a reorg removed the event of a
delivered request) is the same request again, with the same `Idempotency-Key`, plus
`X-ERC8004-Retracted: true`, `"retracted": true` in the default body and `{{retracted}}`
"true" in templates: a receiver checks that header before it drops a repeated key.

A replay's job (a trigger's history asked for on purpose) is sent with the `Idempotency-Key`
a live delivery of its event has, plus `X-ERC8004-Replay: true`, `"replay": true` in the
default body and `{{replay}}` "true" in templates: a receiver that processed the event live
drops it by its key, one that missed it knows it is history.

A receiver verifies with the secret it was shown, comparing in constant time, and refuses
timestamps more than a few minutes old so that a captured request cannot be replayed later.

The credentials users give a webhook, its header values and the password in its URL, are
stored encrypted (see "credentials at rest" below) and decrypted here, for the request only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import orjson
import psycopg
from pydantic import Field, ValidationInfo, field_validator, model_validator
from yarl import URL

from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview
from erc8004_backend.actions.configs import (
    MAX_JSON_DEPTH,
    RetractableConfig,
    json_depth,
    render_json_template,
    validate_config,
)
from erc8004_backend.actions.delivery import DeliveryFailed, Job, connection_failure, excerpt
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import EncryptionError, Sealed, SecretBox
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.outbound import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    ResponseTooLargeError,
    read_capped,
)
from erc8004_backend.retry import parse_retry_after, retryable_status
from erc8004_backend.triggers.templates import PLACEHOLDER, render_template

QUERIES = load_queries("erc8004_backend.actions", "rest.sql")

SIGNATURE_HEADER = "X-ERC8004-Signature"
TIMESTAMP_HEADER = "X-ERC8004-Timestamp"
RETRACTED_HEADER = "X-ERC8004-Retracted"
REPLAY_HEADER = "X-ERC8004-Replay"
# Set by the worker on every request; a config may not replace them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)
SIGNATURE_HEADER_PREFIX = "x-erc8004-"
# C0 controls and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RestConfig(RetractableConfig):
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = "POST"
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    headers: dict[str, str] = Field(default_factory=dict)
    # Any JSON value; its strings are templates. None: the whole job document is sent.
    body_template: Any = None
    timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 10_000

    @field_validator("method", mode="before")
    @classmethod
    def _method_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """Checked, then percent-encoded (spaces, non-ASCII; the host in IDNA) so that it is
        sent as a valid request target; placeholders may fill the path or query only."""
        originals = [match.group(0) for match in PLACEHOLDER.finditer(value)]
        # Stand-ins that URL encoding leaves alone, swapped back afterwards.
        shape = PLACEHOLDER.sub(lambda match: f"placeholder{match.start()}x", value)
        stand_ins = [f"placeholder{match.start()}x" for match in PLACEHOLDER.finditer(value)]
        try:
            parts = urlsplit(shape)
            netloc, host = parts.netloc, parts.hostname
        except ValueError as error:
            raise ValueError(f"not a valid URL: {error}") from None
        if any(stand_in in netloc for stand_in in stand_ins):
            raise ValueError("placeholders may not be used in the host")
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("must be an http(s) URL with a host")
        try:
            encoded = str(URL(shape))
        except ValueError as error:
            raise ValueError(f"not a valid URL: {error}") from None
        for stand_in, original in zip(stand_ins, originals, strict=True):
            encoded = encoded.replace(stand_in, original, 1)
        return encoded

    @field_validator("headers")
    @classmethod
    def _own_headers(cls, headers: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in RESERVED_HEADERS or lowered.startswith(SIGNATURE_HEADER_PREFIX):
                raise ValueError(f"header {name!r} is set by the worker and cannot be configured")
            # aiohttp sends a URL's user info as Authorization, and refuses to send both.
            if lowered == "authorization" and "@" in urlsplit(info.data.get("url", "")).netloc:
                raise ValueError(
                    f"header {name!r} cannot be sent with a URL that has a user name or password"
                )
            if not name or any(c in name for c in " :") or _CONTROL.search(name):
                raise ValueError(f"header {name!r} is not a valid header name")
            # aiohttp refuses to send any control character but tab (CR and LF would split
            # the header): such a header would fail every delivery.
            if _CONTROL.search(value.replace("\t", "")):
                raise ValueError(
                    f"the value of header {name!r} has a control character"
                    " (tab is the only one allowed)"
                )
        return headers

    @model_validator(mode="after")
    def _digest_has_a_body(self) -> RestConfig:
        if self.digest is not None and self.method == "GET":
            raise ValueError("digest: a digest is sent as a JSON body: use POST, PUT or PATCH")
        return self

    @field_validator("body_template")
    @classmethod
    def _deliverable(cls, template: Any) -> Any:
        if json_depth(template) > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            orjson.dumps(template)  # what webhook bodies are encoded with
        except orjson.JSONEncodeError as error:
            raise ValueError(f"cannot be sent as JSON: {error}") from None
        return template


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
    if job.digest is not None:
        return orjson.dumps(digest_document(config, job))
    if config.body_template is None:
        document = {
            **job.payload,
            "trigger": {"id": job.trigger_id, "name": job.trigger_name},
            "idempotency_key": job.idempotency_key,
        }
        return orjson.dumps(document)
    return orjson.dumps(render_json_template(config.body_template, job.values))


def digest_document(config: RestConfig, job: Job) -> dict[str, Any]:
    """A digest's body: the window, how many firings it held, and the first of them, each
    as the body the action sends for one firing (its body_template, or its job document)."""
    digest = job.digest
    if digest is None:
        return {}
    return {
        "digest": {"window_start": digest.window_start.isoformat(),
                   "window_end": digest.window_end.isoformat(), "count": digest.count,
                   "omitted": digest.omitted},
        "trigger": {"id": job.trigger_id, "name": job.trigger_name},
        "idempotency_key": job.idempotency_key,
        "items": [orjson.loads(webhook_body(config, item)) for item in digest.items],
    }  # fmt: skip


def webhook_request(
    config: RestConfig, job: Job, *, secret: str, timestamp: int
) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of an attempt (pure)."""
    # A digest's URL is rendered with its first firing's values.
    first = job.digest.items[0] if job.digest and job.digest.items else job
    url = render_template(config.url, first.values, _url_component)
    body = webhook_body(config, job)
    headers = {
        **config.headers,
        "Idempotency-Key": job.idempotency_key,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    if job.retracted:
        headers[RETRACTED_HEADER] = "true"
    if job.replay:
        headers[REPLAY_HEADER] = "true"
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


def open_rest_config(job: Job, box: SecretBox) -> RestConfig:
    """The job's action config, its credentials decrypted."""
    try:
        config = open_credentials(job.config, box, job.action_id)
    except EncryptionError as error:
        raise DeliveryFailed(
            f"a credential of action {job.action_id} cannot be read: {error}", retryable=False
        ) from None
    return validate_config(RestConfig, "rest", config)


class OpenedConfigs:
    """Stored rest configs, decrypted and validated, by action and stored content (a config
    changed or sealed anew is another entry): every delivery of an action but the first skips
    both, about a seventh of a delivery's CPU. The least recently used go first."""

    def __init__(self, box: SecretBox, size: int = 1024) -> None:
        self.box = box
        self.size = size
        self._opened: OrderedDict[tuple[str, bytes], RestConfig] = OrderedDict()

    def open(self, job: Job) -> RestConfig:
        key = (job.action_id, orjson.dumps(job.config, option=orjson.OPT_SORT_KEYS))
        config = self._opened.get(key)
        if config is not None:
            self._opened.move_to_end(key)
            return config
        config = open_rest_config(job, self.box)  # a config that fails is not kept
        self._opened[key] = config
        if len(self._opened) > self.size:
            self._opened.popitem(last=False)
        return config


async def deliver_rest(
    job: Job,
    *,
    config: RestConfig,
    box: SecretBox,
    session: aiohttp.ClientSession,
    timestamp: int,
    response_max_bytes: int,
) -> dict[str, Any]:
    """One attempt of `job` with its action's `config`, opened (OpenedConfigs)."""
    secret = open_webhook_secret(job, box)
    url, headers, body = webhook_request(config, job, secret=secret, timestamp=timestamp)
    sent = {"request": inspected_request(config, url, headers, body)}
    try:
        # As rendered: no normalising away of encoded dots.
        target, authorization = _without_credentials(URL(url, encoded=True))
        method, data, sending = config.method, body or None, {**headers, **authorization}
        async with asyncio.timeout(config.timeout_ms / 1000):
            for hops in itertools.count():
                async with session.request(
                    method, target, headers=sending, data=data, allow_redirects=False
                ) as response:
                    location = response.headers.get("Location")
                    if response.status not in REDIRECT_STATUSES or location is None:
                        try:
                            kept = excerpt(await read_capped(response, response_max_bytes))
                        except ResponseTooLargeError as error:
                            kept = f"(not kept: {error})"
                        break
                # Followed within the origin only: the action's own headers (its credentials
                # as often as not) and the body are for its URL's server, and aiohttp would
                # carry them anywhere but for Authorization and Cookie.
                following = target.join(URL(location))
                if following.origin() != target.origin():
                    raise DeliveryFailed(
                        f"{_host(url)} redirected to {_host(str(following))}: a webhook is not"
                        " sent on to another origin (give its final URL)",
                        retryable=False, response=sent,
                    )  # fmt: skip
                if hops == MAX_REDIRECTS:
                    raise DeliveryFailed(f"{_host(url)} redirected more than {MAX_REDIRECTS} times",
                                         retryable=False, response=sent)  # fmt: skip
                target = following
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, data = "GET", None  # as clients do (RFC 9110, 15.4)
                    sending = {k: v for k, v in sending.items() if k.lower() != "content-type"}
    except TimeoutError:
        raise DeliveryFailed(
            f"no answer within {config.timeout_ms} ms", retryable=True, response=sent
        ) from None
    except aiohttp.InvalidURL as error:
        # Its text is the URL, which may hold credentials and placeholders' values.
        reason = f": {error.description}" if error.description else ""
        raise DeliveryFailed(f"invalid webhook URL {_host(url)}{reason}", retryable=False) from None
    except ValueError as error:
        raise DeliveryFailed(f"cannot send to {_host(url)}: {error}", retryable=False) from None
    except aiohttp.ClientError as error:
        raise connection_failure(error, host=_host(url), target=_host(url),
                                 response=sent) from None  # fmt: skip
    record = {"status": response.status, "body": kept, **sent}
    if 200 <= response.status < 300:
        return record
    raise DeliveryFailed(
        f"{_host(url)} answered HTTP {response.status}",
        retryable=retryable_status(response.status),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        response=record,
    )


def inspected_request(
    config: RestConfig, url: str, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    """What an attempt sent, for its owner's request inspector: the method, the URL with its
    password and query values masked, the headers with the configured values masked (they
    are credentials as often as not), and an excerpt of the body."""
    try:
        parts = urlsplit(url)
        query = "&".join(
            f"{name}={masked(value)}" if value else name
            for name, _, value in (item.partition("=") for item in parts.query.split("&") if item)
        )
        shown = urlunsplit((parts.scheme, _host(url).split("://", 1)[1], parts.path, query, ""))
    except ValueError:
        shown = _host(url)
    own = {name.lower() for name in config.headers}
    return {
        "method": config.method,
        "url": shown,
        "headers": {
            name: masked(value) if name.lower() in own else value for name, value in headers.items()
        },
        "body": excerpt(body) if body else None,
    }


def _without_credentials(url: URL) -> tuple[URL, dict[str, str]]:
    """A user name or password in the URL is sent as Basic auth. Taken out of the URL here,
    not by aiohttp, so that no URL in an error or a log carries it."""
    if not (url.raw_user or url.raw_password):
        return url, {}
    basic = aiohttp.encode_basic_auth(url.user or "", url.password or "")
    return url.with_user(None), {"Authorization": basic}


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


# -- credentials at rest ------------------------------------------------------------------
#
# A webhook's header values and the password in its URL are stored encrypted as webhook
# secrets are (AES-256-GCM, encryption.py), each bound to its action and name: a header
# value as {"sealed": base64, "key_id": ...} in place of its text, the URL's password as
# `url_password` beside the URL, which keeps its user name only. The API shows them masked.
# Rows written before they were encrypted hold plain text (a migration cannot encrypt: the
# key is in the environment): it is delivered, masked the same way, and encrypted when the
# action is next written.

MASK = "********"


class CredentialError(Erc8004Error):
    """A masked value sent back that stands for no value the action has."""


def masked(value: str) -> str:
    """What the API shows of a credential: the last 4 characters of one of 12 or more."""
    return MASK + (value[-4:] if len(value) >= 12 else "")


def header_context(action_id: str, name: str) -> str:
    """Associated data of a header value: it decrypts only in its own action and header."""
    return f"action:{action_id}:header:{name.lower()}"


def url_password_context(action_id: str) -> str:
    return f"action:{action_id}:url_password"


def split_url_password(url: str) -> tuple[str, str | None]:
    """The URL without the password of its user info, and that password (None: none)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if not password:
        return url, None
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), password


def with_url_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _seal(text: str, box: SecretBox, context: str) -> dict[str, str]:
    sealed = box.seal(text, context)
    return {"sealed": base64.b64encode(sealed.ciphertext).decode(), "key_id": sealed.key_id}


def open_stored(stored: Any, box: SecretBox, context: str) -> str:
    """A stored credential's text: encrypted, or plain in a row written before."""
    if isinstance(stored, str):
        return stored
    try:
        sealed = Sealed(base64.b64decode(stored["sealed"], validate=True), str(stored["key_id"]))
    except (TypeError, KeyError, binascii.Error):
        raise EncryptionError("not an encrypted value") from None
    return box.open(sealed, context)


def shown_masked(stored: Any, box: SecretBox, context: str) -> str:
    try:
        return masked(open_stored(stored, box, context))
    except EncryptionError:  # its key is gone: nothing of it to show
        return MASK


def _stored_url(config: dict[str, Any]) -> tuple[str, Any]:
    """A stored config's URL without its password, and the stored password, if any."""
    url = str(config.get("url", ""))
    if "url_password" in config:
        return url, config["url_password"]
    return split_url_password(url)


def keep_or_seal(text: str, stored: Any, box: SecretBox, context: str, what: str) -> Any:
    if not text.startswith(MASK):
        return _seal(text, box, context)
    if stored is None or text != shown_masked(stored, box, context):
        raise CredentialError(
            f"{what} is masked ({text}) but is not the mask of a value this action has:"
            " send the value itself"
        )
    return _seal(stored, box, context) if isinstance(stored, str) else stored


def seal_credentials(
    config: dict[str, Any], box: SecretBox, action_id: str, stored: dict[str, Any] | None
) -> dict[str, Any]:
    """The config to store for a rest action sent to the API (and validated there), its
    credentials encrypted. A value sent as the mask the API showed keeps the value stored
    (`stored`: the action's config as stored; None for a new action)."""
    stored = stored or {}
    sealed = dict(config)
    previous = {name.lower(): value for name, value in (stored.get("headers") or {}).items()}
    if config.get("headers"):
        sealed["headers"] = {
            name: keep_or_seal(value, previous.get(name.lower()), box,
                                header_context(action_id, name), f"header {name!r}")
            for name, value in config["headers"].items()
        }  # fmt: skip
    # As it is sent (percent-encoded), so that the password is cut out of a valid URL.
    url, password = split_url_password(RestConfig.model_validate(config).url)
    if password is not None:
        sealed["url"] = url
        sealed["url_password"] = keep_or_seal(
            password, _stored_url(stored)[1], box, url_password_context(action_id),
            "url: its password",
        )  # fmt: skip
    return sealed


def mask_credentials(config: dict[str, Any], box: SecretBox, action_id: str) -> dict[str, Any]:
    """A stored rest action's config as the API shows it: credentials masked."""
    shown = dict(config)
    headers = config.get("headers")
    if isinstance(headers, dict):
        shown["headers"] = {name: shown_masked(value, box, header_context(action_id, name))
                            for name, value in headers.items()}  # fmt: skip
    url, password = _stored_url(config)
    shown.pop("url_password", None)
    if password is not None:
        shown["url"] = with_url_password(
            url, shown_masked(password, box, url_password_context(action_id))
        )
    return shown


def open_credentials(config: dict[str, Any], box: SecretBox, action_id: str) -> dict[str, Any]:
    """A stored rest action's config with its credentials decrypted (for the worker).
    Raises EncryptionError when one does not decrypt."""
    opened = dict(config)
    headers = config.get("headers")
    if isinstance(headers, dict):
        opened["headers"] = {name: open_stored(value, box, header_context(action_id, name))
                             for name, value in headers.items()}  # fmt: skip
    if "url_password" in opened:
        password = open_stored(opened.pop("url_password"), box, url_password_context(action_id))
        opened["url"] = with_url_password(str(config.get("url", "")), password)
    return opened


class WebhookChannel:
    """Signed requests to the action's URL, through the address guard."""

    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.box = dependencies.box
        self.configs = OpenedConfigs(dependencies.box)
        self.session = dependencies.session
        self.response_max_bytes = dependencies.settings.response_max_bytes

    async def deliver(self, job: Job) -> dict[str, Any]:
        return await deliver_rest(job, config=self.configs.open(job), box=self.box,
                                  session=self.session, timestamp=int(time.time()),
                                  response_max_bytes=self.response_max_bytes)  # fmt: skip


def preview_body(config: Mapping[str, Any], values: dict[str, Any]) -> Preview | None:
    """The body of its body_template (a stored config: its URL and headers stay sealed, and
    are not shown: they may hold credentials)."""
    template = config.get("body_template")
    if template is None or str(config.get("method", "POST")).upper() == "GET":
        return None
    return Preview(body=render_json_template(template, values))


CHANNEL = ChannelSpec("rest", RestConfig, WebhookChannel, template_keys=("url", "body_template"),
                      preview=preview_body, digests=True)  # fmt: skip
