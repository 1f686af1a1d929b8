"""Hostile event text (markup, mentions, CRLF, HTML, very long text) through every channel's
delivery, as the worker makes it, to a local stand-in of its service that refuses what the
service refuses: each stand-in takes the message (never rejected), and what it receives
shows the values as written (escaped for its markup) or cut with a marker within the
service's limits. Email's is in test_email.py (a real SMTP server; CRLF makes no header).

Each test serves its stand-in once; each example delivers one job (a live one, a replay's or
a retraction) through the channel's `deliver`, built as the worker builds it (the address
guard's sessions, loopback allowed)."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from erc8004_backend.actions.channel import ChannelDependencies
from erc8004_backend.actions.channels import channel_spec
from erc8004_backend.actions.chat_webhooks import RETRACTION_LINE, TRUNCATED
from erc8004_backend.actions.delivery import REPLAY_MARKER, Job
from erc8004_backend.actions.pagerduty import CUT_MARKER, MAX_DETAIL_CHARS, MAX_SUMMARY_CHARS
from erc8004_backend.actions.telegram import (
    RETRACTION_PREFIX,
    TEXT_LIMIT,
    TelegramConfig,
    send_message_body,
)
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from erc8004_backend.outbound import outbound_session
from tests.actions.test_email import HOSTILE as EMAIL_HOSTILE
from tests.support.asgi import serve_asgi
from tests.support.chat_webhooks import DiscordWebhook, SlackWebhook
from tests.support.delivery_targets import TelegramServer, WebhookSink, unescape_markdown_v2
from tests.support.jobs import feedback_event
from tests.support.pagerduty_server import EVENTS_PATH, PagerDutyServer

BOT_TOKEN = "123456:TEST-token"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"

HOSTILE = [
    *EMAIL_HOSTILE,  # CRLF and header lines, <script>, quotes, NUL, SMTP's end of data
    "@everyone @here <@&123> <@456> <!channel> <!here>",
    "*bold* _it_ ~x~ `code` ||spoiler|| **b** __u__",
    "[link](https://evil.example) <https://evil.example|click>",
    "> quote\n# heading\n- item",
    "\\*already escaped\\* &lt;entity&gt; &amp;",
    "<b>bold</b> <a href='tg://user?id=1'>mention</a>",
    "emoji 😀 and astral \U0001d518 characters",  # two UTF-16 code units each
]
hostile_text = st.one_of(
    st.text(),
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(["<", ">", "&", "*", "_", "\\", "@", "`", "\r\n", ".", "😀"])).map(
        "".join
    ),
    # Very long: past every service's limit, once or many times over.
    st.tuples(st.sampled_from([*HOSTILE, "y"]), st.integers(1, 20_000)).map(lambda t: t[0] * t[1]),
)
EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hostile_job(action_type: str, config: dict[str, Any], tag: str, agent: str,
                marks: tuple[bool, bool]) -> Job:  # fmt: skip
    """A job whose event carries `tag` and `agent`; `marks`: (a replay's, a retraction)."""
    replay, retracted = marks
    payload = {"event_id": 1, "event": feedback_event(1, tag1=tag, agent_id=agent),
               "computed": {"trigger_name": "hostile", "trigger_id": "t"},
               **({"replay": True} if replay else {}),
               **({"retracted": True} if retracted else {})}  # fmt: skip
    return Job(id=1, trigger_id="t", trigger_name="hostile", user_id="u", action_id="a",
               action_type=action_type, config=config, event_id=1, chain_id=1, attempt=1,
               max_attempts=1, idempotency_key="key-1", payload=payload)  # fmt: skip


BOX = SecretBox.from_spec(Settings().token_keys)


class Served:
    """A stand-in served on loopback for a whole test, in an event loop of its own in which
    each example's delivery runs (a server per example would cost a fifth of a second)."""

    def __init__(self, stand_in: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._serving = serve_asgi(stand_in)
        self.url = ""

    def __enter__(self) -> Served:
        self.url = self.loop.run_until_complete(self._serving.__aenter__())
        return self

    def __exit__(self, *error: object) -> None:
        self.loop.run_until_complete(self._serving.__aexit__(None, None, None))
        self.loop.close()

    def deliver(self, job: Job, settings: Settings | None = None) -> dict[str, Any]:
        """One attempt of `job` through its channel, built as the worker builds it (the
        address guard's sessions, loopback allowed); the attempt's record."""

        async def attempt() -> dict[str, Any]:
            async with (
                outbound_session(allow_private=True) as session,
                outbound_session(allow_private=True) as operator_session,
            ):
                # No pool: none of these channels reads the database (Telegram's shared
                # limits are off, as in the other stand-in tests).
                dependencies = ChannelDependencies(settings or Settings(), BOX, session,
                                                   operator_session, None)  # type: ignore[arg-type]  # fmt: skip
                channel = channel_spec(job.action_type).build(dependencies)
                return await channel.deliver(job)

        return self.loop.run_until_complete(attempt())


def read_legacy_markdown(text: str) -> str:
    """Plain text in Telegram's legacy Markdown, as Telegram reads it: a backslash before
    _ * ` [ escapes it, any other backslash is itself; a bare _ * ` [ would start an entity
    (AssertionError: no value may make one)."""
    shown, index = [], 0
    while index < len(text):
        char, following = text[index], text[index + 1 : index + 2]
        if char == "\\" and following and following in "_*`[":
            shown.append(following)
            index += 2
            continue
        assert char not in "_*`[", f"a bare {char!r} at {index} in {text!r}"
        shown.append(char)
        index += 1
    return "".join(shown)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def shown_or_cut(received: str, expected: str) -> None:
    """`received` (markup undone) is `expected`, or was cut with the marker: only a text too
    long for the service (escaping makes a text at most 5 times longer) is ever cut."""
    if received != expected:
        assert TRUNCATED in received or CUT_MARKER in received, (received[:200], expected[:200])
        assert len(expected) * 5 > 1_000, (received, expected)


MARKS = st.tuples(st.booleans(), st.booleans())


def prefix(marks: tuple[bool, bool], retraction: str) -> str:
    replay, retracted = marks
    return (retraction if retracted else "") + (f"{REPLAY_MARKER} " if replay else "")


@pytest.mark.parametrize("parse_mode", ["MarkdownV2", "Markdown", "HTML", None])
def test_telegram_takes_hostile_text_escaped_and_within_4096(parse_mode: str | None) -> None:
    template = {"MarkdownV2": "Tag: {{tag1}}\nAgent {{agent_id}}!",
                "Markdown": "Tag: {{tag1}}\nAgent {{agent_id}}!",
                "HTML": "<b>Tag:</b> {{tag1}}\nAgent {{agent_id}}!",
                None: "Tag: {{tag1}}\nAgent {{agent_id}}!"}[parse_mode]  # fmt: skip
    config = {"chat_id": "-1001", "message_template": template, "parse_mode": parse_mode}
    server = TelegramServer(BOT_TOKEN)
    with Served(server) as served:
        settings = Settings(telegram_bot_token=SecretStr(BOT_TOKEN), telegram_api_url=served.url,
                            telegram_rate_limits=False)  # fmt: skip

        @EXAMPLES
        @given(tag=hostile_text, agent=hostile_text, marks=MARKS)
        def check(tag: str, agent: str, marks: tuple[bool, bool]) -> None:
            server.messages.clear()
            answer = served.deliver(hostile_job("telegram", config, tag, agent, marks), settings)
            assert answer["status"] == 200
            [message] = server.messages
            text = message["text"]
            assert utf16_length(text) <= TEXT_LIMIT
            assert message.get("parse_mode") == parse_mode
            if parse_mode == "MarkdownV2":
                shown = unescape_markdown_v2(text)
            elif parse_mode == "Markdown":
                shown = read_legacy_markdown(text)
            elif parse_mode == "HTML":
                # Only the template's own tags: every < of a value arrives as &lt;.
                assert re.findall(r"<[^>]*>", text) == ["<b>", "</b>"]
                shown = html.unescape(text.replace("<b>", "", 1).replace("</b>", "", 1))
            else:
                shown = text
            expected = prefix(marks, RETRACTION_PREFIX) + f"Tag: {tag}\nAgent {agent}!"
            shown_or_cut(shown, expected)
            assert shown.startswith(prefix(marks, RETRACTION_PREFIX) + "Tag: ")

        check()


def test_a_telegram_template_too_long_once_escaped_goes_as_plain_text_cut() -> None:
    """4,096 dots are 8,192 characters escaped in MarkdownV2: nothing a value could lose
    makes that fit, so the message goes without a parse mode, cut with the marker."""
    config = TelegramConfig(chat_id="1", message_template="." * 4088 + "{{tag1}}",
                            parse_mode="MarkdownV2")  # fmt: skip
    body = send_message_body(config, {"tag1": "value", "replay": "true"})
    assert "parse_mode" not in body
    assert body["text"] == f"{REPLAY_MARKER} " + "." * (TEXT_LIMIT - 9 - len(TRUNCATED)) + TRUNCATED


def test_slack_takes_hostile_text_escaped_and_within_its_limits() -> None:
    config = {"text_template": "*Tag:* {{tag1}} {{agent_id}}",
              "blocks_template": [
                  {"type": "header", "text": {"type": "plain_text", "text": "{{agent_id}}"}},
                  {"type": "section", "text": {"type": "mrkdwn", "text": "Tag: {{tag1}}"}}]}  # fmt: skip
    server = SlackWebhook()
    with Served(server) as served:

        @EXAMPLES
        @given(tag=hostile_text, agent=hostile_text, marks=MARKS)
        def check(tag: str, agent: str, marks: tuple[bool, bool]) -> None:
            server.messages.clear()
            served.deliver(hostile_job("slack", {**config, "webhook_url": served.url}, tag,
                                       agent, marks))  # fmt: skip
            [message] = server.messages
            assert len(message["text"]) <= 40_000
            texts = [message["text"], *(block["text"]["text"] for block in message["blocks"]
                                        if "text" in block)]  # fmt: skip
            for text in texts:
                # No raw < or > from a value: nothing makes a link or a mention.
                assert "<" not in text
                assert ">" not in text
            shown = message["text"].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            shown_or_cut(shown, prefix(marks, RETRACTION_LINE) + f"*Tag:* {tag} {agent}")

        check()


def test_discord_takes_hostile_text_escaped_pinging_no_one_within_its_limits() -> None:
    config = {"content_template": "Tag: {{tag1}}",
              "embeds_template": [{"title": "{{agent_id}}", "description": "{{tag1}}",
                                   "fields": [{"name": "agent", "value": "{{agent_id}}"}]}]}  # fmt: skip
    server = DiscordWebhook(bucket_size=1_000_000)  # its rate limit is tested on its own
    with Served(server) as served:

        @EXAMPLES
        @given(tag=hostile_text, agent=hostile_text, marks=MARKS)
        def check(tag: str, agent: str, marks: tuple[bool, bool]) -> None:
            server.messages.clear()
            served.deliver(hostile_job("discord", {**config, "webhook_url": served.url}, tag,
                                       agent, marks))  # fmt: skip
            assert server.refused == []
            [message] = server.messages
            assert message["allowed_mentions"] == {"parse": []}
            assert len(message["content"]) <= 2000
            shown = re.sub(r"\\(.)", r"\1", message["content"], flags=re.S)
            shown_or_cut(shown, prefix(marks, RETRACTION_LINE) + f"Tag: {tag}")
            # Every markdown character of a value is escaped: none is left bare.
            bare = re.search(r"(?<!\\)[*_~`|]", message["content"].replace("\\\\", ""))
            assert bare is None, message["content"]

        check()


def test_pagerduty_takes_hostile_text_within_its_limits() -> None:
    config = {"routing_key": ROUTING_KEY, "summary_template": "Agent {{agent_id}}: {{tag1}}"}
    server = PagerDutyServer(ROUTING_KEY)
    with Served(server) as served:
        settings = Settings(pagerduty_events_url=served.url + EVENTS_PATH)

        @EXAMPLES
        @given(tag=hostile_text, agent=hostile_text, replay=st.booleans())
        def check(tag: str, agent: str, replay: bool) -> None:
            server.events.clear()
            job = hostile_job("pagerduty", config, tag, agent, (replay, False))
            answer = served.deliver(job, settings)
            assert answer["status"] == 202
            [event] = server.events
            summary = event["payload"]["summary"]
            assert len(summary) <= MAX_SUMMARY_CHARS
            assert "\r" not in summary
            assert "\n" not in summary
            # One line: runs of white space are one space.
            expected = prefix((replay, False), "") + " ".join(f"Agent {agent}: {tag}".split())
            shown_or_cut(summary, expected)
            detail = event["payload"]["custom_details"]["tag1"]
            if len(tag) <= MAX_DETAIL_CHARS:
                assert detail == tag  # JSON carries it as it is
            else:
                assert detail.endswith(CUT_MARKER)
                assert len(detail) <= MAX_DETAIL_CHARS
            assert ROUTING_KEY not in str(answer["request"])

        check()


def test_a_webhook_carries_hostile_text_as_json_and_adds_no_header() -> None:
    sink = WebhookSink(secret="whsec_test")
    sealed = BOX.seal(sink.secret, "trigger:t")
    template = {"tag": "{{tag1}}", "agent": ["{{agent_id}}"]}
    with Served(sink) as served:

        @EXAMPLES
        @given(tag=hostile_text, agent=hostile_text, marks=MARKS)
        def check(tag: str, agent: str, marks: tuple[bool, bool]) -> None:
            sink.received.clear()
            config = {"url": served.url + "/hook", "body_template": template}
            job = dataclasses.replace(hostile_job("rest", config, tag, agent, marks),
                                      webhook_secret=sealed.ciphertext,
                                      webhook_secret_key_id=sealed.key_id)  # fmt: skip
            served.deliver(job)
            [received] = sink.received
            assert received.signature_ok
            assert received.json() == {"tag": tag, "agent": [agent]}
            # Values make no header: only the client's and the worker's own are sent.
            assert set(received.headers) <= {
                "host", "content-type", "content-length", "user-agent", "accept",
                "accept-encoding", "idempotency-key", "x-erc8004-timestamp",
                "x-erc8004-signature", "x-erc8004-replay", "x-erc8004-retracted"}  # fmt: skip

        check()
