"""Discord: a message to a channel webhook, its content and embeds from templates.

Values are markdown-escaped (a backslash before each character that formats), and every
message says `allowed_mentions: {"parse": []}`, so no event text can ping `@everyone`, a role
or a user. Texts are cut to Discord's limits with a marker (content 2,000 characters; in an
embed title 256, description 4,096, field name 256 and value 1,024, footer 2,048, author
256; 6,000 in all the embeds). A value in a URL field of an embed is sent only when it is an
http(s) URL. Discord's rate limits are kept per webhook: after an answer whose bucket is
empty (`X-RateLimit-Remaining: 0`), the next message waits for `X-RateLimit-Reset-After` (or
is retried after it, beyond a few seconds); a 429 is retried after its `retry_after`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview, preview_of
from erc8004_backend.actions.chat_webhooks import (
    ChatWebhookConfig,
    failure,
    post_json,
    render_strings,
    retraction_line,
    truncated,
)
from erc8004_backend.actions.configs import (
    MAX_JSON_DEPTH,
    json_depth,
    validate_config,
)
from erc8004_backend.actions.delivery import DeliveryFailed, Job, replay_marker
from erc8004_backend.actions.digest import digest_header, digest_text, more_line
from erc8004_backend.triggers.templates import render_template

CONTENT_LIMIT = 2_000
EMBEDS_TOTAL_LIMIT = 6_000
MAX_EMBEDS = 10
# The limit of each embed string, by where it is.
EMBED_LIMITS = {"title": 256, "description": 4_096, "footer": {"text": 2_048},
                "author": {"name": 256}, "fields": {"name": 256, "value": 1_024}}  # fmt: skip
# A wait for the webhook's rate-limit bucket longer than this is left to the retry.
MAX_BUCKET_WAIT = 3.0
_MARKDOWN = re.compile(r"([\\*_~`|>#\-\[\]()<])")


def escape_markdown(text: str) -> str:
    """A value as Discord shows it literally."""
    return _MARKDOWN.sub(r"\\\1", text)


class DiscordConfig(ChatWebhookConfig):
    content_template: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    # Embed objects whose strings are templates.
    embeds_template: list[dict[str, Any]] | None = None
    username: Annotated[str, Field(min_length=1, max_length=80)] | None = None

    @field_validator("embeds_template")
    @classmethod
    def _embeds(cls, embeds: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if embeds is not None:
            if not 1 <= len(embeds) <= MAX_EMBEDS:
                raise ValueError(f"must hold 1 to {MAX_EMBEDS} embeds")
            if json_depth(embeds) > MAX_JSON_DEPTH:
                raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        return embeds

    @model_validator(mode="after")
    def _something_to_send(self) -> DiscordConfig:
        if self.content_template is None and self.embeds_template is None:
            raise ValueError("give content_template, embeds_template or both")
        return self


def discord_body(config: DiscordConfig, values: dict[str, Any]) -> dict[str, Any]:
    """The webhook's JSON: values escaped, within Discord's limits, mentions off; a
    retraction, and a replay's message, say so first in the content."""

    def render(template: str, limit: int) -> str:
        return truncated(render_template(template, values, escape_markdown), limit)

    body: dict[str, Any] = {"allowed_mentions": {"parse": []}}
    content = retraction_line(values) + replay_marker(values, escape_markdown)
    if config.content_template is not None:
        content += render_template(config.content_template, values, escape_markdown)
    if content:
        body["content"] = truncated(content, CONTENT_LIMIT)
    if config.embeds_template is not None:
        embeds = [_with_urls(render_strings({k: v for k, v in embed.items() if k not in _URLS},
                                            render, EMBED_LIMITS), embed, values)
                  for embed in config.embeds_template]  # fmt: skip
        body["embeds"] = _within_total(embeds)
    if config.username is not None:
        body["username"] = config.username
    return body


def discord_digest_body(config: DiscordConfig, job: Job) -> dict[str, Any]:
    """A digest as one message: its content says how many firings, then each shown one's
    content (content_template); with embeds_template only, the first embed of each shown
    firing instead, up to Discord's ten."""
    items = job.digest.items if job.digest else ()

    def item_text(item: Job) -> str:
        return str(discord_body(config, item.values).get("content", ""))

    body: dict[str, Any] = {"allowed_mentions": {"parse": []}}
    if config.content_template is not None:
        content = digest_text(job, item_text, limit=CONTENT_LIMIT, escape=escape_markdown)
    else:
        embeds = [discord_body(config, item.values)["embeds"][0] for item in items[:MAX_EMBEDS]]
        body["embeds"] = _within_total(embeds)
        left = (job.digest.count if job.digest else 0) - len(embeds)
        content = digest_header(job, escape_markdown)
        content += f"\n{escape_markdown(more_line(left))}" if left > 0 else ""
    body["content"] = truncated(content, CONTENT_LIMIT)
    if config.username is not None:
        body["username"] = config.username
    return body


_URLS = ("url", "image", "thumbnail")


def _with_urls(rendered: dict[str, Any], embed: dict[str, Any], values: dict[str, Any]) -> Any:
    """The embed's URL fields (`url`, `image.url`, `thumbnail.url`), each rendered unescaped
    and kept only if it is an http(s) URL (Discord refuses the whole message otherwise)."""
    for key in _URLS:
        template = embed.get(key)
        template = template.get("url") if key != "url" and isinstance(template, dict) else template
        if not isinstance(template, str):
            continue
        url = render_template(template, values)
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= 2048
        except ValueError:
            valid = False
        if valid:
            rendered[key] = url if key == "url" else {"url": url}
    return rendered


def _within_total(embeds: list[Any]) -> list[Any]:
    """Cuts the longest texts until all the embeds hold at most 6,000 characters."""

    def texts() -> list[tuple[dict[str, Any], str]]:
        found = []
        for embed in embeds:
            places = ((embed, "title"), (embed, "description"), (embed.get("footer"), "text"),
                      (embed.get("author"), "name"))  # fmt: skip
            for holder, key in places:
                if isinstance(holder, dict) and isinstance(holder.get(key), str):
                    found.append((holder, key))
            for item in embed.get("fields") or []:
                if isinstance(item, dict):
                    found.extend((item, key) for key in ("name", "value")
                                 if isinstance(item.get(key), str))  # fmt: skip
        return found

    while (total := sum(len(holder[key]) for holder, key in texts())) > EMBEDS_TOTAL_LIMIT:
        holder, key = max(texts(), key=lambda place: len(place[0][place[1]]))
        holder[key] = truncated(holder[key], len(holder[key]) - (total - EMBEDS_TOTAL_LIMIT))
    return embeds


class DiscordChannel:
    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.session = dependencies.session  # the users' URLs: through the address guard
        self.response_max_bytes = dependencies.settings.response_max_bytes
        self._bucket_reset: dict[str, float] = {}  # webhook URL -> monotonic time it refills

    async def deliver(self, job: Job) -> dict[str, Any]:
        config = validate_config(DiscordConfig, "discord", job.config)
        await self._wait_for_bucket(config.webhook_url)
        body = (discord_digest_body(config, job) if job.digest
                else discord_body(config, job.values))  # fmt: skip
        answer = await post_json(self.session, "Discord", config, body,
                                 response_max_bytes=self.response_max_bytes)  # fmt: skip
        self._remember_bucket(config.webhook_url, answer.headers)
        if 200 <= answer.status < 300:
            return answer.record()
        said = answer.json()
        wait = said.get("retry_after") if isinstance(said, dict) else None
        raise failure("Discord", answer, float(wait) if isinstance(wait, int | float) else None)

    async def _wait_for_bucket(self, url: str) -> None:
        wait = self._bucket_reset.get(url, 0.0) - time.monotonic()
        if wait > MAX_BUCKET_WAIT:
            raise DeliveryFailed("Discord's rate limit for this webhook is spent",
                                 retryable=True, retry_after=wait)  # fmt: skip
        if wait > 0:
            await asyncio.sleep(wait)

    def _remember_bucket(self, url: str, headers: Mapping[str, str]) -> None:
        remaining, reset = headers.get("X-RateLimit-Remaining"), headers.get(
            "X-RateLimit-Reset-After")  # fmt: skip
        try:
            if remaining is not None and reset is not None and int(remaining) == 0:
                self._bucket_reset[url] = time.monotonic() + float(reset)
        except ValueError:
            pass  # a header we cannot read: the 429 path still holds


def _preview(config: DiscordConfig, values: dict[str, Any]) -> Preview:
    body = discord_body(config, values)
    return Preview(text=body.get("content"), body=body.get("embeds"))


CHANNEL = ChannelSpec(
    "discord",
    DiscordConfig,
    DiscordChannel,
    template_keys=("content_template", "embeds_template"),
    digests=True,
    preview=preview_of(DiscordConfig, "discord", _preview),
)
