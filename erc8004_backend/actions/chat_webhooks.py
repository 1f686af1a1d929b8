"""What the chat services' incoming webhooks (Slack, Discord) share: a webhook URL in the
config, a JSON POST through the address guard, their answers read as outcomes (429 with its
wait, other 4xx final, 5xx retried), texts cut to the service's limits with a marker, and
the line a retraction starts with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import Field, field_validator

from erc8004_backend.actions.configs import RetractableConfig
from erc8004_backend.actions.delivery import DeliveryFailed, connection_failure, excerpt
from erc8004_backend.outbound import ResponseTooLargeError, read_capped
from erc8004_backend.retry import parse_retry_after, retryable_status
from erc8004_backend.triggers.fields import RETRACTED_FIELD

TRUNCATED = "… (truncated)"
RETRACTION_LINE = "⚠️ Retracted, reorged out of the chain:\n"


class ChatWebhookConfig(RetractableConfig):
    # Not a template: the service names the channel by the URL, which holds its secret.
    webhook_url: Annotated[str, Field(min_length=1, max_length=2048)]
    timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 10_000

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("must be the service's http(s) webhook URL")
        return value


def truncated(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending with a marker when it was cut (services
    refuse longer texts: a long value must not cost the delivery)."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def retraction_line(values: dict[str, Any]) -> str:
    """What a retraction's text starts with (empty for any other delivery)."""
    return RETRACTION_LINE if values.get(RETRACTED_FIELD) == "true" else ""


def render_strings(template: Any, render: Callable[[str, int], str], limits: Any = None) -> Any:
    """A JSON template with each string rendered by `render(text, limit)`; `limits` mirrors
    the template's shape with the service's limit per key (an int for every string below a
    key, a dict for a nested object); 2,000 where it says none."""
    if isinstance(template, str):
        return render(template, limits if isinstance(limits, int) else 2000)
    if isinstance(template, list):
        return [render_strings(item, render, limits) for item in template]
    if isinstance(template, dict):
        return {key: render_strings(item, render,
                                    limits.get(key) if isinstance(limits, dict) else limits)
                for key, item in template.items()}  # fmt: skip
    return template


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    request: dict[str, Any]  # what was sent, for the request inspector

    def record(self) -> dict[str, Any]:
        """What the attempt keeps: the answer's status and excerpt, and the request."""
        return {"status": self.status, "body": excerpt(self.body), "request": self.request}

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


async def post_json(
    session: aiohttp.ClientSession,
    service: str,
    config: ChatWebhookConfig,
    body: dict[str, Any],
    *,
    response_max_bytes: int,
) -> Answer:
    """POSTs `body` to the config's webhook; DeliveryFailed when no answer came."""
    host = urlsplit(config.webhook_url).hostname
    data = orjson.dumps(body)
    # The webhook URL's path is its secret: the inspector shows the host only.
    sent = {"method": "POST", "url": f"{urlsplit(config.webhook_url).scheme}://{host}/…",
            "body": excerpt(data)}  # fmt: skip
    try:
        async with session.post(
            config.webhook_url,
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=config.timeout_ms / 1000),
            allow_redirects=False,
        ) as response:
            raw = await read_capped(response, response_max_bytes)
            return Answer(response.status, response.headers, raw, sent)
    except TimeoutError:
        raise DeliveryFailed(f"{service} did not answer within {config.timeout_ms} ms",
                             retryable=True, response={"request": sent}) from None  # fmt: skip
    except ResponseTooLargeError as error:
        raise DeliveryFailed(f"{service}'s answer: {error}", retryable=True) from None
    except aiohttp.ClientError as error:
        raise connection_failure(error, host=str(host), target=f"{service} ({host})",
                                 response={"request": sent}) from None  # fmt: skip


def failure(service: str, answer: Answer, retry_after: float | None = None) -> DeliveryFailed:
    """A webhook's refusal: 429 and 5xx retried (after the service's wait), others final."""
    wait = retry_after if retry_after is not None else parse_retry_after(
        answer.headers.get("Retry-After"))  # fmt: skip
    return DeliveryFailed(
        f"{service} answered HTTP {answer.status}: {excerpt(answer.body)[:200]}",
        retryable=retryable_status(answer.status),
        retry_after=wait,
        response=answer.record(),
    )
