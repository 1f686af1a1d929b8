"""Discord: hostile event text reaches the webhook escaped, pinging no one and within
Discord's limits, and the worker keeps to a webhook's rate-limit bucket of a local stand-in
of Discord's webhooks, retrying its 429s."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.actions.chat_webhooks import TRUNCATED
from erc8004_backend.actions.discord import DiscordConfig, discord_body, escape_markdown
from tests.actions.test_worker import job_status_counts, running_worker, settings_for
from tests.support.asgi import serve_asgi
from tests.support.chat_webhooks import DiscordWebhook, _discord_problem
from tests.support.jobs import create_trigger, queue_jobs
from tests.support.waiting import eventually

HOSTILE = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "@everyone",
            "@here <@&123> <@456>",
            "**bold** __u__ ~~s~~ `c` ||spoiler||",
            "> quote",
            "# heading",
            "[link](https://evil.example)",
            "line\r\nbreak",
            "\\*already\\*",
        ]
    ),
    st.builds(
        lambda unit, size: (unit * size)[:size],
        st.text(alphabet="*_x@", min_size=1, max_size=4),
        st.integers(2001, 7000),
    ),
)
WEBHOOK = "https://discord.com/api/webhooks/1/token"


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


@settings(deadline=None)
@given(HOSTILE)
def test_values_are_escaped_ping_no_one_and_fit_the_content(value: str) -> None:
    config = DiscordConfig(webhook_url=WEBHOOK, content_template="Tag: {{tag1}}")
    body = discord_body(config, {"tag1": value})
    assert body["allowed_mentions"] == {"parse": []}
    assert len(body["content"]) <= 2000
    shown = body["content"].removeprefix("Tag: ")
    if shown.endswith(TRUNCATED):
        assert escape_markdown(value).startswith(shown.removesuffix(TRUNCATED))
    else:
        assert unescape(shown) == value
        # Every formatting character of the value is escaped.
        assert re.search(r"(?<!\\)[*_~`|>#\[\]()<]", shown.replace("\\\\", "")) is None


@settings(deadline=None)
@given(st.lists(HOSTILE, min_size=1, max_size=4))
def test_embeds_stay_within_discords_limits_whatever_the_values(values: list[str]) -> None:
    embeds = [{"title": f"{{{{tag{n % 2 + 1}}}}}", "description": "{{tag1}} {{tag2}}",
               "url": "{{tag2}}", "fields": [{"name": "{{tag1}}", "value": "{{tag2}}"}],
               "footer": {"text": "{{tag1}}"}} for n in range(len(values))]  # fmt: skip
    config = DiscordConfig(webhook_url=WEBHOOK, embeds_template=embeds)
    body = discord_body(config, {"tag1": values[0], "tag2": values[-1]})
    assert _discord_problem(body) is None  # what Discord checks, passed
    for embed in body["embeds"]:
        assert "url" not in embed or embed["url"].startswith(("http://", "https://"))


async def test_the_worker_keeps_to_the_webhooks_bucket_and_retries_its_429s(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_asgi(discord := DiscordWebhook(bucket_size=5, bucket_seconds=1.0)) as url:
        config: dict[str, Any] = {"webhook_url": url, "content_template": "{{tag1}} #{{agent_id}}"}
        trigger, action, _ = await create_trigger(conn, "discord", config)
        discord.rate_limit_next(1, retry_after=0.3)
        jobs = await queue_jobs(conn, trigger, action, 12, tag1="@everyone")
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: len(discord.messages) == 12, timeout=30,
                             what="12 Discord messages")  # fmt: skip
            await eventually(lambda: _all_succeeded(conn, len(jobs)), timeout=10)
    assert {m["content"] for m in discord.messages} == {"@everyone #42"}  # pings no one
    assert all(m["allowed_mentions"] == {"parse": []} for m in discord.messages)
    assert discord.refused == []
    assert discord.limited >= 1  # the forced one at least; every 429 was retried


async def _all_succeeded(conn: psycopg.AsyncConnection, count: int) -> bool:
    return await job_status_counts(conn) == {"succeeded": count}
