"""The plain data of one delivery: the job a worker claimed, and how an attempt ends.

A channel (telegram, rest, mcp) returns what the target answered, to be kept in
`action_results.response_data`, or raises `DeliveryFailed`, which says whether trying again
could succeed and how long the target asked us to wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.outbound import refusal
from erc8004_backend.triggers.fields import REPLAY_FIELD, RETRACTED_FIELD, explorer_links

# What the audit trail keeps of a response body.
RESPONSE_EXCERPT_CHARS = 2_000
# What a chat message, an email's subject or an alert's summary starts with when its job was
# queued by a replay (history asked for, not news). Each channel escapes it for its markup.
REPLAY_MARKER = "(replay)"


@dataclass(frozen=True)
class Job:
    id: int
    trigger_id: str
    trigger_name: str
    user_id: str
    action_id: str
    action_type: str
    config: dict[str, Any]
    event_id: int | None  # None: a silence that ran from its trigger's start
    chain_id: int
    attempt: int  # this attempt's number, from 1
    max_attempts: int
    idempotency_key: str
    # {"event_id", "event": fields, "computed": {ema_score, count, trigger_name, ...}}
    payload: dict[str, Any]
    webhook_secret: bytes | None = None
    webhook_secret_key_id: str | None = None
    # The block explorer of the job's chain, if the worker knows one (not stored: the worker
    # sets it from its chains, so links follow the configuration, not the queue's past).
    explorer_url: str | None = None
    # A digest job's firings, as the worker read them (actions/digest.py); None otherwise.
    digest: Digest | None = None

    @property
    def values(self) -> dict[str, Any]:
        return template_values(self.payload, self.explorer_url)

    @property
    def retracted(self) -> bool:
        """A retraction: a reorg removed the event an earlier delivery of this job's action
        was about."""
        return bool(self.payload.get("retracted"))

    @property
    def replay(self) -> bool:
        """Queued by a replay: an event the trigger's history holds, asked for on purpose
        (its idempotency key is the one a live delivery of the event has)."""
        return bool(self.payload.get("replay"))

    @property
    def is_digest(self) -> bool:
        """A digest of its action's firings (its payload says so from its creation)."""
        return "digest" in self.payload

    @property
    def is_alert(self) -> bool:
        """An alert to the owner's account alert action (actions/alerts.py)."""
        return "alert" in self.payload


@dataclass(frozen=True)
class Digest:
    """What a digest job carries: how many firings its window held, and the first of them
    (as jobs of their own: their payloads, idempotency keys and explorer links)."""

    count: int
    window_start: datetime
    window_end: datetime
    items: tuple[Job, ...]

    @property
    def omitted(self) -> int:
        return self.count - len(self.items)


def template_values(payload: dict[str, Any], explorer_url: str | None) -> dict[str, Any]:
    """What templates can name, from a job's payload: the event's fields, links to the event
    on the explorer and the computed values."""
    event = payload.get("event", {})
    links = explorer_links(event, explorer_url)
    retracted = "true" if payload.get("retracted") else "false"
    replay = "true" if payload.get("replay") else "false"
    return {**event, **links, **payload.get("computed", {}), RETRACTED_FIELD: retracted,
            REPLAY_FIELD: replay}  # fmt: skip


def replay_marker(values: dict[str, Any], escape: Callable[[str], str] = str) -> str:
    """What a replay's message starts with: the marker (escaped for the message's markup)
    and a space; empty for any other delivery."""
    return escape(REPLAY_MARKER) + " " if values.get(REPLAY_FIELD) == "true" else ""


class DeliveryFailed(Erc8004Error):  # noqa: N818 (an outcome, named like one)
    """An attempt did not deliver.

    `retryable`: the same request could succeed later (timeouts, connection errors, 5xx,
    408, 429); otherwise the job is dead-lettered at once. `retry_after`: the target's own
    wait, in seconds, a floor for the backoff. `counted`: False for an attempt that sent
    nothing because the target's send slots were taken (rate limits shared with other
    actions, or other users): the job waits for `retry_after`, its attempts as they were.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        response: dict[str, Any] | None = None,
        counted: bool = True,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.response = response
        self.counted = counted


def connection_failure(
    error: Exception, *, host: str, target: str, response: dict[str, Any] | None = None
) -> DeliveryFailed:
    """An HTTP client's failure to reach `host` (`target` in the message): final when the
    address guard refused the address, retryable otherwise."""
    refused = refusal(error)
    if refused:
        return DeliveryFailed(
            f"refused to send to {host}: {refused}"
            " (ERC8004_ALLOW_PRIVATE_URLS=true or ERC8004_ALLOWED_NETWORKS allow it)",
            retryable=False,
        )
    return DeliveryFailed(
        f"cannot reach {target}: {described(error)}", retryable=True, response=response
    )


def described(error: Exception) -> str:
    """An HTTP client's error as its type and text, without the request's URL: aiohttp's
    response errors (an answer that is not HTTP, say) end with the whole URL, whose path and
    query often hold the target's credentials."""
    text = str(error)
    status, message = getattr(error, "status", None), getattr(error, "message", None)
    if hasattr(error, "request_info") and isinstance(status, int) and isinstance(message, str):
        text = f"{status}, {message}"  # an aiohttp.ClientResponseError
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def excerpt(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.replace("\x00", "\ufffd")  # PostgreSQL text and jsonb refuse NUL
    if len(text) <= RESPONSE_EXCERPT_CHARS:
        return text
    return text[:RESPONSE_EXCERPT_CHARS] + f"... ({len(text)} characters)"
