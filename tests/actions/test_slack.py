"""Slack: hostile event text reaches the webhook escaped and within Slack's limits, and the
worker delivers to a local stand-in of Slack's incoming webhooks, waiting out a 429."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.actions.chat_webhooks import TRUNCATED
from erc8004_backend.actions.slack import SlackConfig, escape_mrkdwn, slack_body
from tests.actions.test_worker import results, running_worker, settings_for
from tests.support.asgi import serve_asgi
from tests.support.chat_webhooks import SlackWebhook
from tests.support.jobs import create_trigger, queue_jobs
from tests.support.waiting import eventually

HOSTILE = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "<!channel>",
            "<@U024BE7LH>",
            "<https://evil.example|click>",
            "a & b",
            "*bold* _it_ ~x~ `code`",
            "line\r\nbreak",
            "&lt;already&gt;",
        ]
    ),
    st.builds(
        lambda unit, size: (unit * size)[:size],
        st.text(alphabet="<&>x", min_size=1, max_size=4),
        st.integers(40_001, 41_000),
    ),
)


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@settings(deadline=None)
@given(HOSTILE)
def test_values_are_escaped_for_mrkdwn_and_cut_to_the_limit(value: str) -> None:
    config = SlackConfig(webhook_url="https://hooks.slack.com/services/T/B/x",
                         text_template="*Tag:* {{tag1}}")  # fmt: skip
    text = slack_body(config, {"tag1": value})["text"]
    assert len(text) <= 40_000
    shown = text.removeprefix("*Tag:* ")
    if shown.endswith(TRUNCATED):
        assert escape_mrkdwn(value).startswith(shown.removesuffix(TRUNCATED))
    else:
        assert unescape(shown) == value
    # Only the entities Slack decodes: no raw < or > that could open a link or a mention.
    assert "<" not in shown
    assert ">" not in shown


def test_blocks_are_rendered_within_their_limits_and_a_retraction_says_so_first() -> None:
    config = SlackConfig(
        webhook_url="https://hooks.slack.com/services/T/B/x", text_template="Agent {{agent_id}}",
        blocks_template=[
            {"type": "header", "text": {"type": "plain_text", "text": "{{tag1}}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Score* {{score}} {{tag1}}"}},
        ],
    )  # fmt: skip
    body = slack_body(config, {"agent_id": "7", "score": "12", "tag1": "x" * 5000,
                               "retracted": "true"})  # fmt: skip
    assert body["text"] == "⚠️ Retracted, reorged out of the chain:\nAgent 7"
    retraction, header, section = body["blocks"]
    assert retraction["text"]["text"] == "⚠️ Retracted, reorged out of the chain:"
    assert len(header["text"]["text"]) == 150
    assert header["text"]["text"].endswith(TRUNCATED)
    assert len(section["text"]["text"]) == 3000


async def test_the_worker_delivers_to_slack_escaped_and_waits_out_a_429(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_asgi(slack := SlackWebhook()) as url:
        config: dict[str, Any] = {"webhook_url": url,
                                  "text_template": "Agent {{agent_id}}: {{tag1}}"}  # fmt: skip
        trigger, action, _ = await create_trigger(conn, "slack", config)
        slack.rate_limit_next(1, retry_after=1)
        started = time.monotonic()
        await queue_jobs(conn, trigger, action, 1, tag1="<!channel> & <@U1>")
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: slack.messages, timeout=20, what="a Slack message")
    assert slack.messages == [{"text": "Agent 42: &lt;!channel&gt; &amp; &lt;@U1&gt;"}]
    assert slack.requests[1] - slack.requests[0] >= 1.0  # Retry-After: 1
    assert time.monotonic() - started >= 1.0
    assert [r["status"] for r in await results(conn)] == ["retrying", "success"]
