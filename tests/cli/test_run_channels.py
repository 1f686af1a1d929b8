"""Slack, Discord, email, PagerDuty and Telegram end to end through `erc8004 run` on the
devnet (webhooks and MCP calls have theirs in test_run_end_to_end): one trigger with an action
per channel, feedback with hostile tags given on the chain, and each
channel's local stand-in (speaking its service's protocol and refusing what the service
refuses) receiving every event once, escaped, after answering the first attempt with its
service's "slow down" (429 with Retry-After or retry_after, Telegram's with its
parameters.retry_after; SMTP's 451).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from erc8004_backend.devnet import Devnet
from tests.support.asgi import serve_asgi
from tests.support.chat_webhooks import DiscordWebhook, SlackWebhook
from tests.support.delivery_targets import TelegramServer, unescape_markdown_v2
from tests.support.pagerduty_server import PagerDutyServer
from tests.support.smtp_server import Inbox, serve_smtp
from tests.support.system import running_system
from tests.support.waiting import eventually

ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"
BOT_TOKEN = "4242:channels-bot-token"
# What event text can hold: a Slack broadcast, a Discord ping, markup and a header break.
HOSTILE_TAGS = ["<!channel> @everyone", "**bold** <b>html</b>", "line\r\nBcc: x@evil.test"]
SCORES = [12, 34, 56]
RETRY = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1.0}


def channel_actions(slack_url: str, discord_url: str) -> list[dict[str, Any]]:
    text = "Agent {{agent_id}} scored {{score}} ({{tag1}})"
    return [
        {"action_type": "slack", "config": {"webhook_url": f"{slack_url}/services/T/B/x",
                                            "text_template": text, **RETRY}},
        {"action_type": "discord", "config": {"webhook_url": f"{discord_url}/api/webhooks/1/t",
                                              "content_template": text, **RETRY}},
        {"action_type": "email", "config": {"to": ["ops@example.com"],
                                            "subject_template": "Agent {{agent_id}}: {{tag1}}",
                                            "text_template": text, **RETRY}},
        {"action_type": "pagerduty", "config": {"routing_key": ROUTING_KEY,
                                                "summary_template": text, "severity": "error",
                                                **RETRY}},
        {"action_type": "telegram", "config": {"chat_id": "123456789",
                                               # MarkdownV2: the template's own ( ) escaped.
                                               "message_template": text.replace("(", r"\(")
                                                                       .replace(")", r"\)"),
                                               "parse_mode": "MarkdownV2", **RETRY}},
    ]  # fmt: skip


async def test_each_channel_delivers_every_event_once_escaped_after_its_rate_limit(
    devnet: Devnet, database_url: str, tmp_path: Path
) -> None:
    slack, discord = SlackWebhook(), DiscordWebhook()
    pagerduty, inbox = PagerDutyServer(routing_key=ROUTING_KEY), Inbox()
    telegram = TelegramServer(token=BOT_TOKEN)
    telegram.rate_limit_next(1, retry_after=1)
    slack.rate_limit_next(1, retry_after=1)
    discord.rate_limit_next(1, retry_after=0.5)
    pagerduty.rate_limit_next(1, retry_after=1)
    inbox.fail_next(1, "451 4.7.0 Try again later")
    async with (
        serve_asgi(slack) as slack_url,
        serve_asgi(discord) as discord_url,
        serve_asgi(pagerduty) as pagerduty_url,
        serve_smtp(inbox, security="starttls") as smtp,
        serve_asgi(telegram) as telegram_url,
        running_system(
            devnet, database_url, tmp_path,
            ERC8004_SMTP_HOST="127.0.0.1", ERC8004_SMTP_PORT=str(smtp.port),
            ERC8004_SMTP_SECURITY="starttls", ERC8004_SMTP_CA_FILE=str(smtp.ca_file),
            ERC8004_SMTP_FROM="alerts@example.com",
            ERC8004_PAGERDUTY_EVENTS_URL=f"{pagerduty_url}/v2/enqueue",
            ERC8004_TELEGRAM_API_URL=telegram_url, ERC8004_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
            ERC8004_TELEGRAM_RATE_LIMITS="false",
        ) as system,
    ):  # fmt: skip
        agent = (await devnet.activity.register_agent("https://agent.example/card.json")).agent_id
        created = await system.client.post("/triggers", headers=system.headers, json={
            "name": "every channel", "chain_id": 31337, "registry": "reputation",
            "conditions": [{"condition_type": "event_type_equals", "field": "event_type",
                            "operator": "=", "value": "NewFeedback"}],
            "actions": channel_actions(slack_url, discord_url),
        })  # fmt: skip
        assert created.status_code == 201, created.text
        await eventually(lambda: bool(system.logged("processor.triggers_loaded")),
                         what="the processor loading the trigger")  # fmt: skip
        for score, tag in zip(SCORES, HOSTILE_TAGS, strict=True):
            await devnet.activity.give_feedback(agent, score, tag1=tag)

        def all_arrived() -> bool:
            counts = (len(slack.messages), len(discord.messages), len(pagerduty.events),
                      len(inbox.mails), len(telegram.messages))  # fmt: skip
            return counts == (3, 3, 3, 3, 3)

        await eventually(all_arrived, 30, what="three messages at each stand-in")

        async def finished_jobs() -> list[dict[str, Any]] | None:
            page = await system.client.get("/jobs", headers=system.headers,
                                           params={"state": "delivered"})  # fmt: skip
            items: list[dict[str, Any]] = page.json()["items"]
            return items if len(items) == 15 else None

        jobs = await eventually(finished_jobs, 10, what="fifteen delivered jobs")
        await asyncio.sleep(1.5)  # long enough for a retry that should not happen

    # Once per event and channel: no loss, no double send.
    assert len(slack.messages) == len(discord.messages) == len(inbox.mails) == 3
    assert len(telegram.messages) == 3
    assert Counter(event["event_action"] for event in pagerduty.events) == {"trigger": 3}
    assert len(pagerduty.alerts) == 3  # three dedup keys: one alert per event
    # Each channel's first attempt was told to wait, and its job tried again.
    attempts = Counter(job["action_type"] for job in jobs for _ in range(job["attempts"]))
    assert attempts == {"slack": 4, "discord": 4, "email": 4, "pagerduty": 4, "telegram": 4}
    assert {job["idempotency_key"] for job in jobs if job["action_type"] == "pagerduty"} == set(
        pagerduty.alerts
    )

    slack_texts = sorted(message["text"] for message in slack.messages)
    assert not any("<!channel>" in text for text in slack_texts)  # no broadcast
    assert any("&lt;!channel&gt; @everyone" in text for text in slack_texts)
    for message in discord.messages:  # no ping, and the markdown shown as typed
        assert message["allowed_mentions"] == {"parse": []}
        assert "**bold**" not in message["content"]
    assert any(r"\*\*bold\*\*" in message["content"] for message in discord.messages)
    for mail in inbox.mails:
        assert mail.encrypted
        assert mail.rcpt_tos == ["ops@example.com"]
        assert mail.message["Bcc"] is None  # the CRLF in a tag made no header
    subjects = sorted(str(mail.message["Subject"]) for mail in inbox.mails)
    assert any("Bcc: x@evil.test" in subject for subject in subjects)  # kept as text
    # Telegram's MarkdownV2: every value escaped, so the text reads as the tag was written.
    shown = {unescape_markdown_v2(message["text"]) for message in telegram.messages}
    assert any("(<!channel> @everyone)" in text for text in shown)
    assert any("(**bold** <b>html</b>)" in text for text in shown)
    texts = {mail.text() for mail in inbox.mails}
    for score in SCORES:
        assert any(f"Agent {agent} scored {score} (" in text for text in texts)
        assert any(f"scored {score} " in event["payload"]["summary"] for event in pagerduty.events)
