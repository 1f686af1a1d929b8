"""Slack: a message to an incoming webhook, its text (and optionally Block Kit blocks) from
templates.

Values are escaped as Slack's mrkdwn asks (`&`, `<`, `>`), so that no event text can make a
link or a mention (`<!channel>`); the template's own text is its author's mrkdwn. Texts are
cut to Slack's limits with a marker: 40,000 characters of message text, 3,000 per block text
(150 in a header). A 429 is retried after its Retry-After; other 4xx answers (a deleted
webhook, an archived channel, invalid blocks) are final.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview, preview_of
from erc8004_backend.actions.chat_webhooks import (
    RETRACTION_LINE,
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
from erc8004_backend.actions.delivery import Job, replay_marker
from erc8004_backend.actions.digest import digest_text
from erc8004_backend.triggers.templates import render_template

TEXT_LIMIT = 40_000
BLOCK_TEXT_LIMIT = 3_000
HEADER_TEXT_LIMIT = 150
_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_mrkdwn(text: str) -> str:
    """A value as Slack shows it literally in mrkdwn."""
    return text.translate(_MRKDWN)


class SlackConfig(ChatWebhookConfig):
    text_template: Annotated[str, Field(min_length=1, max_length=4000)]
    # Block Kit blocks whose strings are templates; the text is then the notification's.
    blocks_template: list[Any] | None = None

    @field_validator("blocks_template")
    @classmethod
    def _blocks(cls, blocks: list[Any] | None) -> list[Any] | None:
        if blocks is not None:
            if not blocks or not all(isinstance(block, dict) for block in blocks):
                raise ValueError("must be a non-empty list of Block Kit blocks (objects)")
            if json_depth(blocks) > MAX_JSON_DEPTH:
                raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        return blocks


def slack_body(config: SlackConfig, values: dict[str, Any]) -> dict[str, Any]:
    """The webhook's JSON: values escaped, texts within Slack's limits; a retraction, and a
    replay's message, say so first."""

    def render(template: str, limit: int) -> str:
        return truncated(render_template(template, values, escape_mrkdwn), limit)

    marker = replay_marker(values, escape_mrkdwn)
    text = retraction_line(values) + marker + render_template(config.text_template, values,
                                                              escape_mrkdwn)  # fmt: skip
    body: dict[str, Any] = {"text": truncated(text, TEXT_LIMIT)}
    if config.blocks_template is not None:
        blocks = [render_strings(block, render, _limits(block)) for block in config.blocks_template]
        if marker:
            note = {"type": "mrkdwn", "text": marker.strip()}
            blocks.insert(0, {"type": "context", "elements": [note]})
        if retraction_line(values):
            line = {"type": "mrkdwn", "text": RETRACTION_LINE.strip()}
            blocks.insert(0, {"type": "section", "text": line})
        body["blocks"] = blocks
    return body


def slack_digest_body(config: SlackConfig, job: Job) -> dict[str, Any]:
    """A digest as one message: its text only (each firing's text_template; no blocks)."""

    def item_text(item: Job) -> str:
        values = item.values
        return retraction_line(values) + render_template(config.text_template, values,
                                                         escape_mrkdwn)  # fmt: skip

    text = digest_text(job, item_text, limit=TEXT_LIMIT, escape=escape_mrkdwn)
    return {"text": truncated(text, TEXT_LIMIT)}


def _limits(block: dict[str, Any]) -> Any:
    return HEADER_TEXT_LIMIT if block.get("type") == "header" else BLOCK_TEXT_LIMIT


class SlackChannel:
    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.session = dependencies.session  # the users' URLs: through the address guard
        self.response_max_bytes = dependencies.settings.response_max_bytes

    async def deliver(self, job: Job) -> dict[str, Any]:
        config = validate_config(SlackConfig, "slack", job.config)
        body = slack_digest_body(config, job) if job.digest else slack_body(config, job.values)
        answer = await post_json(self.session, "Slack", config, body,
                                 response_max_bytes=self.response_max_bytes)  # fmt: skip
        if answer.status == 200:
            return answer.record()
        raise failure("Slack", answer)


CHANNEL = ChannelSpec(
    "slack",
    SlackConfig,
    SlackChannel,
    template_keys=("text_template", "blocks_template"),
    digests=True,
    preview=preview_of(
        SlackConfig,
        "slack",
        lambda config, values: Preview(text=slack_body(config, values)["text"]),
    ),
)
