"""PagerDuty: an alert through the Events API v2 (https://developer.pagerduty.com/docs/
events-api-v2/trigger-events/), to the service of the action's integration (routing) key.

Every attempt of a job sends the same `dedup_key`, the job's idempotency key, so PagerDuty
keeps one alert however often it is retried; a retraction (with `notify_retractions`, after
a reorg removed the event) resolves that alert with the same key. A replay's alert (history
asked for) has the key a live one has, and `(replay)` before its summary.

The routing key is stored encrypted, as webhooks' credentials are (rest.py, "credentials at
rest"), bound to its action, and the API shows it masked. The events URL is the operator's
(ERC8004_PAGERDUTY_EVENTS_URL); requests go through the address guard all the same. Each
attempt keeps the request it sent, its routing key masked, for the request inspector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import aiohttp
import orjson
from pydantic import Field, field_validator

from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview
from erc8004_backend.actions.configs import (
    ActionConfigError,
    RetractableConfig,
    validate_config,
)
from erc8004_backend.actions.delivery import (
    DeliveryFailed,
    Job,
    described,
    excerpt,
    replay_marker,
)
from erc8004_backend.actions.rest import MASK, keep_or_seal, masked, open_stored, shown_masked
from erc8004_backend.encryption import EncryptionError, SecretBox
from erc8004_backend.outbound import ResponseTooLargeError, read_capped, refusal
from erc8004_backend.retry import parse_retry_after, retryable_status
from erc8004_backend.triggers.templates import render_template

# PagerDuty's own bounds (the Events API refuses more).
MAX_SUMMARY_CHARS = 1024
MAX_SOURCE_CHARS = 255
# A custom detail's text is cut past this: the whole event must stay under 512 KB.
MAX_DETAIL_CHARS = 4_000
CUT_MARKER = "[…]"
RETRACTION_PREFIX = "Retracted: "
TIMEOUT_SECONDS = 10.0
Severity = Literal["critical", "error", "warning", "info"]


class PagerDutyConfig(RetractableConfig):
    # The service's Events API v2 integration key (32 characters); stored encrypted.
    routing_key: Annotated[str, Field(min_length=1, max_length=64)]
    summary_template: Annotated[str, Field(min_length=1, max_length=2_048)]
    source_template: Annotated[str, Field(min_length=1, max_length=512)] = (
        "erc8004 chain {{chain_id}} {{registry}} registry"
    )
    severity: Severity = "warning"
    component: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    group: Annotated[str, Field(min_length=1, max_length=255)] | None = None

    @field_validator("routing_key")
    @classmethod
    def _key_shape(cls, key: str) -> str:
        if key.startswith(MASK):
            return key  # the mask of a stored key, kept by the API (seal_routing_key)
        if not key.isascii() or not key.isalnum():
            raise ValueError("must be the integration key of an Events API v2 integration")
        return key


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARKER)] + CUT_MARKER


def _value(text: str) -> str:
    return cut(text, MAX_SUMMARY_CHARS)


def summary(config: PagerDutyConfig, values: dict[str, Any], *, retracted: bool) -> str:
    text = render_template(config.summary_template, values, _value)
    # Shown as one line in PagerDuty's lists.
    text = replay_marker(values) + (" ".join(text.split()) or "(no summary)")
    return cut(RETRACTION_PREFIX + text if retracted else text, MAX_SUMMARY_CHARS)


def custom_details(values: dict[str, Any]) -> dict[str, Any]:
    """The event's fields, links and computed values, long texts cut."""
    return {key: cut(value, MAX_DETAIL_CHARS) if isinstance(value, str) else value
            for key, value in values.items()}  # fmt: skip


def event_body(
    config: PagerDutyConfig, values: dict[str, Any], *, dedup_key: str, retracted: bool
) -> dict[str, Any]:
    """The Events API v2 request (pure): a trigger, or a resolve for a retraction."""
    routing = {"routing_key": config.routing_key, "dedup_key": dedup_key}
    if retracted:
        return {**routing, "event_action": "resolve"}
    payload: dict[str, Any] = {
        "summary": summary(config, values, retracted=False),
        "source": cut(" ".join(render_template(config.source_template, values, _value).split())
                      or "erc8004-backend", MAX_SOURCE_CHARS),
        "severity": config.severity,
        "custom_details": custom_details(values),
    }  # fmt: skip
    if timestamp := values.get("timestamp"):
        payload["timestamp"] = timestamp
    if config.component:
        payload["component"] = config.component
    if config.group:
        payload["group"] = config.group
    body: dict[str, Any] = {**routing, "event_action": "trigger", "payload": payload,
                            "client": "erc8004-backend"}  # fmt: skip
    links = [{"href": values[name], "text": text}
             for name, text in (("transaction_url", "Transaction"), ("block_url", "Block"))
             if values.get(name)]  # fmt: skip
    if links:
        body["links"] = links
    return body


# -- the routing key at rest ---------------------------------------------------------------


def routing_key_context(action_id: str) -> str:
    """Associated data of a routing key: it decrypts only in its own action."""
    return f"action:{action_id}:routing_key"


def seal_routing_key(
    config: dict[str, Any], box: SecretBox, action_id: str, stored: dict[str, Any] | None
) -> dict[str, Any]:
    """The config to store (validated by the API), its routing key encrypted; the mask the
    API showed keeps the key stored. Raises CredentialError for a mask of no stored key."""
    previous = (stored or {}).get("routing_key")
    key = str(config["routing_key"])
    return {**config, "routing_key": keep_or_seal(key, previous, box,
                                                  routing_key_context(action_id),
                                                  "routing_key")}  # fmt: skip


def mask_routing_key(config: dict[str, Any], box: SecretBox, action_id: str) -> dict[str, Any]:
    if "routing_key" not in config:
        return config
    return {**config, "routing_key": shown_masked(config["routing_key"], box,
                                                  routing_key_context(action_id))}  # fmt: skip


def open_pagerduty_config(job: Job, box: SecretBox) -> PagerDutyConfig:
    config = dict(job.config)
    if "routing_key" in config:
        try:
            config["routing_key"] = open_stored(config["routing_key"], box,
                                                routing_key_context(job.action_id))  # fmt: skip
        except EncryptionError as error:
            raise DeliveryFailed(f"the routing key of action {job.action_id} cannot be read:"
                                 f" {error}", retryable=False) from None  # fmt: skip
    return validate_config(PagerDutyConfig, "pagerduty", config)


# -- delivering ----------------------------------------------------------------------------


def inspected_event(url: str, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """What an attempt sent, for its owner's request inspector: the events URL (the
    operator's), the headers, and the body with its routing key masked as the API shows it."""
    shown = {**body, "routing_key": masked(str(body.get("routing_key", "")))}
    return {"method": "POST", "url": url, "headers": headers,
            "body": excerpt(orjson.dumps(shown))}  # fmt: skip


async def deliver_pagerduty(
    body: dict[str, Any], *, session: aiohttp.ClientSession, url: str, response_max_bytes: int
) -> dict[str, Any]:
    """One Events API request: the response record, or DeliveryFailed; either holds the
    request."""
    headers = {"Content-Type": "application/json"}
    sent = {"request": inspected_event(url, headers, body)}
    try:
        async with session.post(
            url,
            data=orjson.dumps(body),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
        ) as response:
            try:
                raw = await read_capped(response, response_max_bytes)
            except ResponseTooLargeError as error:
                raw = f"(not kept: {error})".encode()
    except TimeoutError:
        raise DeliveryFailed("PagerDuty did not answer in time", retryable=True,
                             response=sent) from None  # fmt: skip
    except aiohttp.ClientError as error:
        if refused := refusal(error):
            raise DeliveryFailed(f"refused to send to PagerDuty's events URL: {refused}",
                                 retryable=False) from None  # fmt: skip
        raise DeliveryFailed(f"cannot reach PagerDuty: {described(error)}", retryable=True,
                             response=sent) from None  # fmt: skip
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    record: dict[str, Any] = {"status": response.status}
    if isinstance(answer, dict):
        record |= {key: answer[key] for key in ("status", "message", "dedup_key", "errors")
                   if key in answer} | {"status": response.status}  # fmt: skip
        if isinstance(answer.get("status"), str):
            record["result"] = answer["status"]
    else:
        record["body"] = excerpt(raw)
    record |= sent
    if response.status == 202:
        return record
    # 400: the event is invalid (sending it again will not help); 429: PagerDuty's rate
    # limit for the key; 5xx: PagerDuty's own trouble (its documentation: retry).
    problems = answer.get("errors") if isinstance(answer, dict) else None
    detail = f": {'; '.join(map(str, problems))}" if isinstance(problems, list) else ""
    raise DeliveryFailed(
        f"PagerDuty answered HTTP {response.status}{detail}",
        retryable=retryable_status(response.status),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        response=record,
    )


class PagerDutyChannel:
    """Events API v2 requests to the operator's events URL, through the address guard."""

    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.box = dependencies.box
        self.session = dependencies.session
        self.url = dependencies.settings.pagerduty_events_url
        self.response_max_bytes = dependencies.settings.response_max_bytes

    async def deliver(self, job: Job) -> dict[str, Any]:
        config = open_pagerduty_config(job, self.box)
        body = event_body(config, job.values, dedup_key=job.idempotency_key,
                          retracted=job.retracted)  # fmt: skip
        return await deliver_pagerduty(body, session=self.session, url=self.url,
                                       response_max_bytes=self.response_max_bytes)  # fmt: skip


def preview_summary(config: Mapping[str, Any], values: dict[str, Any]) -> Preview | None:
    """The alert's summary (the stored routing key is not needed for it, nor shown)."""
    try:
        parsed = validate_config(PagerDutyConfig, "pagerduty", {**config, "routing_key": "x"})
    except ActionConfigError:
        return None
    return Preview(text=summary(parsed, values, retracted=values.get("retracted") == "true"))


CHANNEL = ChannelSpec("pagerduty", PagerDutyConfig, PagerDutyChannel,
                      template_keys=("summary_template", "source_template"),
                      preview=preview_summary)  # fmt: skip
