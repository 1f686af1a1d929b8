"""Telegram: the Bot API's sendMessage, with values escaped for the message's parse mode.

A message holds at most 4,096 characters (Telegram refuses longer ones): past that, the
longest values are cut, before they are escaped and with a marker saying so, until it fits,
so no escape, entity or markup of the template's is cut in half. A template that does not fit
even so is sent as plain text, cut with the marker.

The bot token is part of the URL Telegram wants (`/bot<token>/sendMessage`), so no URL or
message here ever carries it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import aiohttp
import orjson
from pydantic import Field, ValidationInfo, field_validator

from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview, preview_of
from erc8004_backend.actions.chat_webhooks import TRUNCATED
from erc8004_backend.actions.configs import (
    RetractableConfig,
    validate_config,
)
from erc8004_backend.actions.delivery import DeliveryFailed, Job, excerpt, replay_marker
from erc8004_backend.actions.digest import digest_text
from erc8004_backend.actions.noise import take_slot
from erc8004_backend.outbound import ResponseTooLargeError, read_capped
from erc8004_backend.retry import parse_retry_after, retryable_status
from erc8004_backend.triggers.fields import RETRACTED_FIELD, format_value
from erc8004_backend.triggers.templates import PLACEHOLDER, render_template

# https://core.telegram.org/bots/api#sendmessage: 1-4096 characters after entities parsing.
# Counted here before parsing (never fewer), in UTF-16 code units, as Telegram counts.
TEXT_LIMIT = 4096
# Telegram's limits, as seconds between messages: a bot sends about 30 a second, one a second
# to a chat, 20 a minute to a group or channel (chat ids "-100..." or "@name").
BOT_INTERVAL = 1 / 30
CHAT_INTERVAL = 1.0
GROUP_INTERVAL = 3.0
# https://core.telegram.org/bots/api#formatting-options
_MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
# A value escaped whole: the reserved characters and the escape itself.
_MARKDOWN_V2_SPECIAL = re.compile(f"([{re.escape(''.join(sorted(_MARKDOWN_V2_RESERVED)))}\\\\])")
_MARKDOWN_SPECIAL = re.compile(r"([_*`\[])")


class TelegramConfig(RetractableConfig):
    chat_id: Annotated[str, Field(min_length=1, max_length=128)]
    # (Before the template, whose check reads it.)
    parse_mode: Literal["MarkdownV2", "Markdown", "HTML"] | None = None
    message_template: Annotated[str, Field(min_length=1, max_length=4096)]
    disable_notification: bool = False

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id_text(cls, value: Any) -> Any:
        # Chat ids are numbers in Telegram's API; JSON writers send them either way.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("message_template")
    @classmethod
    def _markup_telegram_parses(cls, template: str, info: ValidationInfo) -> str:
        # Only for new input (the API's): a stored template goes on as it did, and Telegram
        # says at delivery what it refuses.
        if info.data.get("parse_mode") == "MarkdownV2" and (info.context or {}).get("new_input"):
            problem = markdown_v2_problem(_markup_of(template))
            if problem is not None:
                raise ValueError(problem)
        return template


def _markup_of(template: str) -> str:
    """The MarkdownV2 markup of a template, character for character (so that a position in
    it is one in the template): its placeholders, whose values are escaped whole, and the
    punctuation template_text escapes, as plain letters."""
    plain = PLACEHOLDER.sub(lambda match: "x" * len(match.group(0)), template)
    out, escaped = [], False
    for char in plain:
        out.append("x" if char in _NEVER_MARKUP and not escaped else char)
        escaped = char == "\\" and not escaped
    return "".join(out)


def markdown_v2_problem(text: str) -> str | None:
    """Why Telegram would refuse `text` as a MarkdownV2 message, or None: a reserved
    character outside the markup it may start, or markup left open. Lenient where Telegram's
    rules are subtle (entities crossing each other, what may nest): those it says at
    delivery. https://core.telegram.org/bots/api#markdownv2-style"""
    open_marks: dict[str, int] = {}  # *, _, __, ~, ||, [ -> where each opened
    index, line_start, expandable = 0, True, False
    while index < len(text):
        char, start = text[index], index
        at_line_start, line_start = line_start, char == "\n"
        if char == "\\":
            if index + 1 == len(text):
                return f"the '\\' at character {index + 1} escapes nothing"
            line_start = text[index + 1] == "\n"
            index += 2
            continue
        if char == "`":
            fence = "```" if text.startswith("```", index) else "`"
            end = _closing(text, index + len(fence), fence)
            if end is None:
                what = "the pre block" if fence == "```" else "the code"
                return f"{what} opened at character {start + 1} is never closed with {fence}"
            index = end + len(fence)
            continue
        if at_line_start and text.startswith("**>", index):  # an expandable blockquote
            expandable, index = True, index + 3
            continue
        mark = next((m for m in ("__", "||", "*", "_", "~") if text.startswith(m, index)), None)
        if mark == "||" and expandable and text[index + 2 : index + 3] in ("", "\n"):
            expandable, index = False, index + 2  # the expandable blockquote's end
            continue
        if mark is not None:
            if open_marks.pop(mark, None) is None:
                open_marks[mark] = start
            index += len(mark)
            continue
        if char == "[":
            open_marks["["] = start
        elif char == "]" and "[" in open_marks and text.startswith("(", index + 1):
            end = _closing(text, index + 2, ")")
            if end is None:
                return f"the link's address at character {index + 2} is never closed with ')'"
            del open_marks["["]
            index = end + 1
            continue
        elif char == ">" and at_line_start:
            pass  # a blockquote
        elif char in _MARKDOWN_V2_RESERVED:
            return (
                f"'{char}' at character {start + 1} is reserved in MarkdownV2: escape it as"
                f" '\\{char}'" + (" (or write a link, [text](url))" if char in "()]" else "")
            )
        index += 1
    if open_marks:
        mark, start = min(open_marks.items(), key=lambda item: item[1])
        return (f"the '{mark}' at character {start + 1} is never closed: close it, or"
                f" escape it as '\\{mark[0]}'")  # fmt: skip
    return None


def _closing(text: str, index: int, fence: str) -> int | None:
    """Where `fence` next appears unescaped in `text` from `index`, or None."""
    while index < len(text):
        if text[index] == "\\":
            index += 2
        elif text.startswith(fence, index):
            return index
        else:
            index += 1
    return None


def escape_for(parse_mode: str | None) -> Callable[[str], str]:
    """How a value is escaped so that it shows as written in a message of `parse_mode`."""
    if parse_mode == "MarkdownV2":
        return lambda text: _MARKDOWN_V2_SPECIAL.sub(r"\\\1", text)
    if parse_mode == "Markdown":
        return lambda text: _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    if parse_mode == "HTML":
        return lambda text: html.escape(text, quote=False)
    return lambda text: text


# In MarkdownV2 these are reserved but never start formatting, so a template's own text can
# have them escaped for its author ("Agent #42: score 4.5!"); * _ ~ | [ ] ( ) ` > stay the
# author's markup, to be escaped by hand where meant literally.
_NEVER_MARKUP = frozenset("#+-={}.!")


def template_text(template: str, parse_mode: str | None) -> str:
    """The template with its literal MarkdownV2 text made valid (placeholders untouched)."""
    if parse_mode != "MarkdownV2":
        return template
    parts = []
    last = 0
    for match in PLACEHOLDER.finditer(template):
        parts.append(_escape_literal(template[last : match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(_escape_literal(template[last:]))
    return "".join(parts)


def _escape_literal(text: str) -> str:
    out = []
    characters = iter(text)
    for char in characters:
        if char == "\\":  # the author's own escape: it and what it escapes stay as written
            out.append(char + next(characters, ""))
        else:
            out.append("\\" + char if char in _NEVER_MARKUP else char)
    return "".join(out)


# Before a retraction's message (a reorg removed the event of a delivered one): plain words
# that need no escaping in any parse mode.
RETRACTION_PREFIX = "⚠️ Retracted, reorged out of the chain:\n"


def send_message_body(config: TelegramConfig, values: dict[str, Any]) -> dict[str, Any]:
    """The sendMessage request: the template rendered with escaped values (after "(replay)"
    in a replay's, and a line saying so in a retraction), within Telegram's length."""
    parse_mode = config.parse_mode
    text = _message_text(config.message_template, values, parse_mode)
    if text is None:  # the template alone is too long once escaped: plain text, cut
        parse_mode = None
        plain = _prefix(values, escape_for(None)) + render_template(config.message_template,
                                                                    values)  # fmt: skip
        text = _cut_utf16(plain, TEXT_LIMIT)
    body: dict[str, Any] = {"chat_id": config.chat_id, "text": text}
    if parse_mode:
        body["parse_mode"] = parse_mode
    if config.disable_notification:
        body["disable_notification"] = True
    return body


def _prefix(values: dict[str, Any], escape: Callable[[str], str]) -> str:
    """A retraction's line, then a replay's marker (empty for a live delivery)."""
    retraction = RETRACTION_PREFIX if values.get(RETRACTED_FIELD) == "true" else ""
    return retraction + replay_marker(values, escape)


def _message_text(template: str, values: dict[str, Any], parse_mode: str | None) -> str | None:
    """The message's text, its values cut as little as makes it fit (None: nothing does)."""
    template = template_text(template, parse_mode)
    escape = escape_for(parse_mode)
    prefix = _prefix(values, escape)

    def render(limit: int | None) -> str:
        cut = escape if limit is None else (lambda value: escape(truncated(value, limit)))
        return prefix + render_template(template, values, cut)

    text = render(None)
    if _utf16_length(text) <= TEXT_LIMIT:
        return text
    # The longest cut of every value that fits (the length grows with the cut).
    low, high = 0, max((len(format_value(value)) for value in values.values()), default=0)
    if _utf16_length(render(low)) > TEXT_LIMIT:
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if _utf16_length(render(middle)) <= TEXT_LIMIT:
            low = middle
        else:
            high = middle - 1
    return render(low)


def truncated(value: str, limit: int) -> str:
    """A value longer than `limit` characters cut to them, the marker included; never made
    longer than it was (a limit below the marker's length cuts to the marker alone)."""
    if len(value) <= max(limit, len(TRUNCATED)):
        return value
    return value[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut_utf16(text: str, limit: int) -> str:
    if _utf16_length(text) <= limit:
        return text
    kept = text.encode("utf-16-le")[: 2 * (limit - len(TRUNCATED))]
    return kept.decode("utf-16-le", "ignore") + TRUNCATED  # "ignore": half a surrogate pair


def digest_message_body(config: TelegramConfig, job: Job) -> dict[str, Any]:
    """A digest as one sendMessage: each shown firing's message, as many as fit in
    Telegram's 4,096 characters (whole, so that no markup is cut)."""
    escape = escape_for(config.parse_mode)
    body = send_message_body(config, job.values)
    body["text"] = digest_text(
        job, lambda item: send_message_body(config, item.values)["text"], limit=TEXT_LIMIT,
        escape=escape,
    )  # fmt: skip
    return body


async def deliver_telegram(
    config: TelegramConfig,
    values: dict[str, Any],
    *,
    session: aiohttp.ClientSession,
    api_url: str,
    token: str | None,
    response_max_bytes: int,
    timeout: float = 10.0,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if not token:
        raise DeliveryFailed(
            "no Telegram bot token is configured (set ERC8004_TELEGRAM_BOT_TOKEN)",
            retryable=False,
        )
    body = body or send_message_body(config, values)
    url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
    data = orjson.dumps(body)
    # For the request inspector: the token is part of the URL, and never shown.
    sent = {"method": "POST", "url": f"{api_url.rstrip('/')}/bot…/sendMessage",
            "body": excerpt(data)}  # fmt: skip
    try:
        async with session.post(
            url,
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            raw = await read_capped(response, response_max_bytes)
    except TimeoutError:
        raise DeliveryFailed("Telegram did not answer in time", retryable=True) from None
    except aiohttp.ClientError as error:
        reason = _without(token, f"{type(error).__name__}: {error}")
        raise DeliveryFailed(f"cannot reach Telegram: {reason}", retryable=True) from None
    except ResponseTooLargeError as error:
        raise DeliveryFailed(f"Telegram's answer: {error}", retryable=True) from None
    try:
        outcome = _outcome(response.status, response.headers.get("Retry-After"), raw, token)
    except DeliveryFailed as failure:
        failure.response = {**(failure.response or {}), "request": sent}
        raise
    return {**outcome, "request": sent}


def _outcome(status: int, retry_after_header: str | None, raw: bytes, token: str) -> dict[str, Any]:
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        record = {"status": status, "body": _without(token, excerpt(raw))}
        raise DeliveryFailed(
            f"Telegram answered HTTP {status} without a Bot API reply",
            retryable=retryable_status(status),
            response=record,
        )
    if status == 200 and answer.get("ok") is True:
        result = answer.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return {"status": status, "message_id": message_id}
    description = _without(token, str(answer.get("description") or f"HTTP {status}"))
    parameters = answer.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if not isinstance(retry_after, int | float):
        retry_after = parse_retry_after(retry_after_header)
    code = answer.get("error_code", status)
    record = {"status": status, "error_code": code, "description": description}
    if status == 401:
        description = "the bot token was refused (Unauthorized)"
    raise DeliveryFailed(
        f"Telegram refused the message: {description}",
        retryable=retryable_status(status),
        retry_after=float(retry_after) if retry_after is not None else None,
        response=record,
    )


def _without(token: str, text: str) -> str:
    return text.replace(token, "***")


class TelegramChannel:
    """sendMessage to the chat of the action's config, with the operator's bot."""

    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.settings = dependencies.settings
        self.session = dependencies.operator_session  # the Telegram API URL is the operator's
        self.pool = dependencies.pool

    async def deliver(self, job: Job) -> dict[str, Any]:
        config = validate_config(TelegramConfig, "telegram", job.config)
        if self.settings.telegram_rate_limits:
            # https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this
            group = config.chat_id.startswith(("-", "@"))
            await take_slot(self.pool, f"telegram:chat:{config.chat_id}",
                            GROUP_INTERVAL if group else CHAT_INTERVAL)  # fmt: skip
            await take_slot(self.pool, "telegram:bot", BOT_INTERVAL)
        token = self.settings.telegram_bot_token
        return await deliver_telegram(
            config,
            job.values,
            session=self.session,
            api_url=self.settings.telegram_api_url,
            token=token.get_secret_value() if token else None,
            response_max_bytes=self.settings.response_max_bytes,
            body=digest_message_body(config, job) if job.digest else None,
        )


CHANNEL = ChannelSpec(
    "telegram",
    TelegramConfig,
    TelegramChannel,
    template_keys=("message_template",),
    digests=True,
    preview=preview_of(
        TelegramConfig,
        "telegram",
        lambda config, values: Preview(text=send_message_body(config, values)["text"]),
    ),
)
