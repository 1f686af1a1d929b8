"""Digests, through PostgreSQL and real workers to loopback stand-ins: every firing of a
digest action is in exactly one digest, each digest holds exactly the firings made in its
window, a worker that dies mid-digest costs nothing, and the chat channels send one message
with the count and the first firings, escaped as each asks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.channels import parse_action_config
from erc8004_backend.actions.configs import ActionConfigError
from erc8004_backend.actions.delivery import DeliveryFailed, Digest, Job
from erc8004_backend.actions.digest import digest_header, fold_firings, open_digest
from erc8004_backend.actions.discord import DiscordConfig, discord_digest_body
from erc8004_backend.actions.queue import (
    claim_jobs,
    decide,
    record_attempts,
    redeliver_jobs,
    release_expired_leases,
)
from erc8004_backend.actions.slack import SlackConfig, slack_digest_body
from erc8004_backend.actions.telegram import TelegramConfig, digest_message_body
from erc8004_backend.encryption import SecretBox
from erc8004_backend.retry import RetryPolicy
from tests.actions.test_worker import BOT_TOKEN, running_worker, settings_for, webhook_target
from tests.support.asgi import serve_asgi
from tests.support.chat_webhooks import DiscordWebhook, SlackWebhook
from tests.support.delivery_targets import (
    TelegramServer,
    plain_markdown_v2_problem,
    unescape_markdown_v2,
)
from tests.support.jobs import create_trigger, queue_jobs
from tests.support.smtp_server import Inbox, serve_smtp
from tests.support.waiting import eventually


async def _firings(conn: psycopg.AsyncConnection) -> dict[int, tuple[datetime, str, int | None]]:
    """event id -> (created_at, status, digest job id) of every firing."""
    cursor = await conn.execute(
        "SELECT event_id, created_at, status, digest_job_id FROM action_jobs"
        " WHERE event_id IS NOT NULL"
    )
    return {row[0]: (row[1], row[2], row[3]) for row in await cursor.fetchall()}


async def _digests_done(conn: psycopg.AsyncConnection, firings: int) -> bool:
    cursor = await conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'digested' AND event_id IS NOT NULL),"
        " count(*) FILTER (WHERE digest_window IS NOT NULL AND status <> 'succeeded')"
        " FROM action_jobs"
    )
    return await cursor.fetchone() == (firings, 0)


async def _fire_through_windows(
    conn: psycopg.AsyncConnection,
    trigger: str,
    action: str,
    window: int,
    seconds: float,
    *,
    burst: int,
    pause: float,
) -> int:
    """Firings in bursts of `burst`, `pause` seconds apart, for `seconds` from just after a
    window of `window` seconds opens (so that they span whole windows); how many."""
    await asyncio.sleep(window - time.time() % window + 0.05)
    started = time.monotonic()
    event = 1
    while time.monotonic() - started < seconds:
        await queue_jobs(conn, trigger, action, burst, first_event=event)
        event += burst
        await asyncio.sleep(pause)
    return event - 1


async def test_each_digest_holds_exactly_the_firings_of_its_window(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """Firings made in real time over several windows, folded by two workers: each received
    digest holds exactly the firings made in its window, none lost, none twice."""
    window = 2
    async with webhook_target(conn, box, body_template=None,
                              digest={"window_seconds": window, "max_items": 100}) as (
        sink, _url, trigger, action,
    ):  # fmt: skip
        settings = settings_for(migrated_url)
        async with running_worker(settings), running_worker(settings):
            # Firings over four whole windows.
            fired = await _fire_through_windows(conn, trigger, action, window, 4 * window - 0.2,
                                                burst=1, pause=0.07)  # fmt: skip
            await eventually(lambda: _digests_done(conn, fired), timeout=30, what="digests sent")
    firings = await _firings(conn)
    assert len(firings) == fired
    assert {status for _, status, _ in firings.values()} == {"digested"}
    received = [request.json() for request in sink.received]
    assert len(sink.processed) == len(received)  # each digest sent once
    seen: list[int] = []
    windows = set()
    for body in received:
        start = datetime.fromisoformat(body["digest"]["window_start"])
        end = datetime.fromisoformat(body["digest"]["window_end"])
        assert (end - start).total_seconds() == window
        events = [item["event_id"] for item in body["items"]]
        made_in_window = {e for e, (at, _, _) in firings.items() if start <= at < end}
        assert set(events) == made_in_window, (start, events)
        assert body["digest"]["count"] == len(events)
        assert body["digest"]["omitted"] == 0
        assert events == sorted(events)  # in the order they were made
        seen.extend(events)
        windows.add(start)
    assert sorted(seen) == list(range(1, fired + 1))  # every firing once
    assert len(windows) == len(received) >= 4  # one digest per window
    # Each firing's audit trail names the digest that carried it.
    cursor = await conn.execute(
        "SELECT r.response_data ->> 'digest_job_id', j.digest_job_id::text FROM action_results r"
        " JOIN action_jobs j ON j.id = r.job_id WHERE r.status = 'digested'"
    )
    rows = await cursor.fetchall()
    assert len(rows) == fired
    assert all(named == digest for named, digest in rows)


async def test_max_items_bounds_what_is_shown_not_what_is_counted(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """Firings of three past windows, queued while no worker ran: three digests, each with
    its window's count and its first firings."""
    async with webhook_target(conn, box, body_template=None,
                              digest={"window_seconds": 60, "max_items": 3}) as (
        sink, _url, trigger, action,
    ):  # fmt: skip
        ids = await queue_jobs(conn, trigger, action, 12)
        # 5, 4 and 3 firings in three consecutive windows an hour ago.
        base = "date_trunc('hour', now()) - interval '1 hour'"
        for index, job_id in enumerate(ids):
            window = 0 if index < 5 else 1 if index < 9 else 2
            await conn.execute(
                f"UPDATE action_jobs SET created_at = {base} + make_interval(secs => %s)"
                " WHERE id = %s",
                [window * 60 + index, job_id],
            )
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: len(sink.processed) == 3, timeout=20, what="3 digests")
            await eventually(lambda: _digests_done(conn, 12), timeout=10)
    bodies = sorted((r.json() for r in sink.received), key=lambda b: b["digest"]["window_start"])
    assert [b["digest"]["count"] for b in bodies] == [5, 4, 3]
    assert [b["digest"]["omitted"] for b in bodies] == [2, 1, 0]
    assert [[item["event_id"] for item in b["items"]] for b in bodies] == [
        [1, 2, 3], [6, 7, 8], [10, 11, 12],
    ]  # fmt: skip
    # Each item is the body the action sends for one firing: its job document.
    assert bodies[0]["items"][0]["event"]["agent_id"] == "42"
    assert bodies[0]["items"][0]["trigger"] == {"id": trigger, "name": "test trigger"}


async def test_a_worker_that_dies_mid_digest_loses_and_repeats_nothing(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """A worker claims a digest, closes it and dies before sending it; another claims
    firings of the same window and dies before folding them. After their leases, a live
    worker sends that same digest (its key, its firings) once, and the others in a second
    digest of the window."""
    async with webhook_target(conn, box, body_template=None,
                              digest={"window_seconds": 60, "max_items": 50}) as (
        sink, _url, trigger, action,
    ):  # fmt: skip
        ids = await queue_jobs(conn, trigger, action, 6)
        await conn.execute(
            "UPDATE action_jobs SET created_at = date_trunc('hour', now()) - interval '1 hour'"
        )
        # Ghost 1 claims and folds the first three, so that their digest exists.
        first = await claim_jobs(conn, worker="ghost-1", limit=3, lease_seconds=30)
        assert [job.id for job in first] == ids[:3]
        await fold_firings(conn, worker="ghost-1", firings=[(job, 60) for job in first],
                           settle_seconds=0)  # fmt: skip
        # Ghost 2 claims the digest (due: its window is past), closes and freezes it, and
        # dies before sending it.
        (digest,) = await claim_jobs(conn, worker="ghost-2", limit=1, lease_seconds=2)
        assert digest.is_digest
        async with AsyncConnectionPool(migrated_url, min_size=1, max_size=2, open=False,
                                       kwargs={"autocommit": True}) as pool:  # fmt: skip
            frozen = await open_digest(pool, digest, max_items=50, explorer_of=lambda _: None)
        # Ghost 3 claims the other three and dies before folding them.
        assert len(await claim_jobs(conn, worker="ghost-3", limit=3, lease_seconds=2)) == 3
        assert frozen.digest is not None
        assert [item.id for item in frozen.digest.items] == ids[:3]
        async with running_worker(settings_for(migrated_url, worker_lease_seconds=2)):
            await eventually(lambda: _digests_done(conn, 6), timeout=30, what="all digested")
            await asyncio.sleep(0.5)  # nothing more arrives
    assert len(sink.received) == 2
    assert not sink.repeats
    by_key = {r.key: r.json() for r in sink.received}
    assert by_key[digest.idempotency_key]["digest"]["count"] == 3
    assert [i["event_id"] for i in by_key[digest.idempotency_key]["items"]] == [1, 2, 3]
    (late,) = [body for key, body in by_key.items() if key != digest.idempotency_key]
    # The other three were made in the same window, folded after its digest had closed.
    assert (
        late["digest"]["window_start"] == by_key[digest.idempotency_key]["digest"]["window_start"]
    )
    assert [i["event_id"] for i in late["items"]] == [4, 5, 6]
    cursor = await conn.execute(
        "SELECT status, count(*) FROM action_results WHERE job_id = ANY(%s) GROUP BY status",
        [ids[3:]],
    )
    # Ghost 3's lost attempt, then the fold.
    assert dict(await cursor.fetchall()) == {"retrying": 3, "digested": 3}


async def test_a_digest_that_dies_unopened_takes_no_more_firings_and_is_sent_when_redelivered(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """A digest that goes dead before an attempt opened it (refused at once, or its leases
    ran out) is closed: a later firing of its window starts a digest of its own instead of
    joining one that will not be sent, and a redelivery of the dead one sends what it held."""
    policy = RetryPolicy(max_attempts=1, backoff_initial=1.0, backoff_max=1.0)
    async with webhook_target(conn, box, body_template=None,
                              digest={"window_seconds": 60, "max_items": 50}) as (
        _sink, _url, trigger, action,
    ):  # fmt: skip
        hour_ago = "date_trunc('hour', now()) - interval '1 hour'"

        async def fold(count: int, first_event: int) -> list[int]:
            ids = await queue_jobs(conn, trigger, action, count, first_event=first_event)
            await conn.execute(f"UPDATE action_jobs SET created_at = {hour_ago}"
                               " WHERE id = ANY(%s)", [ids])  # fmt: skip
            claimed = await claim_jobs(conn, worker="w", limit=count, lease_seconds=30)
            assert sorted(job.id for job in claimed) == ids
            await fold_firings(conn, worker="w", firings=[(job, 60) for job in claimed],
                               settle_seconds=0)  # fmt: skip
            return ids

        async def digest_of(job_id: int) -> int:
            cursor = await conn.execute(
                "SELECT digest_job_id FROM action_jobs WHERE id = %s", [job_id]
            )
            row = await cursor.fetchone()
            assert row is not None
            assert row[0] is not None
            return int(row[0])

        # Refused at its one attempt, before anything opened it.
        first = await fold(2, 1)
        (refused,) = await claim_jobs(conn, worker="w", limit=1, lease_seconds=30)
        assert refused.is_digest
        assert refused.id == await digest_of(first[0])
        outcome = decide(refused, DeliveryFailed("HTTP 400", retryable=False), policy,
                         duration_ms=1)  # fmt: skip
        assert await record_attempts(conn, worker="w", attempts=[outcome]) == 1
        # Its lease run out at its last attempt.
        second = await fold(1, 3)
        assert await digest_of(second[0]) != refused.id  # a digest of its own
        (lost,) = await claim_jobs(conn, worker="w", limit=1, lease_seconds=30)
        await conn.execute("UPDATE action_jobs SET max_attempts = 1,"
                           " locked_until = now() - interval '1 second' WHERE id = %s",
                           [lost.id])  # fmt: skip
        assert await release_expired_leases(conn) == 1
        third = await fold(1, 4)
        assert await digest_of(third[0]) not in (refused.id, lost.id)
        cursor = await conn.execute(
            "SELECT id, status, digest_open FROM action_jobs WHERE id = ANY(%s) ORDER BY id",
            [[refused.id, lost.id]],
        )
        assert await cursor.fetchall() == [(refused.id, "dead", False), (lost.id, "dead", False)]

        # Redelivered, each sends what it held when it died.
        assert sorted(await redeliver_jobs(conn, job_ids=[refused.id, lost.id])) == sorted(
            [refused.id, lost.id]
        )
        again = await claim_jobs(conn, worker="w", limit=5, lease_seconds=30)
        async with AsyncConnectionPool(migrated_url, min_size=1, max_size=2, open=False,
                                       kwargs={"autocommit": True}) as pool:  # fmt: skip
            held = {}
            for job in again:
                if job.id in (refused.id, lost.id):
                    opened = await open_digest(pool, job, max_items=50,
                                               explorer_of=lambda _: None)  # fmt: skip
                    assert opened.digest is not None
                    held[job.id] = [item.id for item in opened.digest.items]
    assert held == {refused.id: first, lost.id: second}


async def test_slack_gets_one_message_with_the_count_and_escaped_firings(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    slack = SlackWebhook()
    async with serve_asgi(slack) as url:
        config = {"webhook_url": url, "text_template": "*Agent* {{agent_id}}: {{tag1}}",
                  "digest": {"window_seconds": 60, "max_items": 2}}  # fmt: skip
        trigger, action, _ = await create_trigger(conn, "slack", config, name="<!channel> & co")
        await queue_jobs(conn, trigger, action, 3, tag1="<!here>")
        await conn.execute(
            "UPDATE action_jobs SET created_at = date_trunc('hour', now()) - interval '1 hour'"
        )
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: slack.messages, timeout=20, what="the digest")
            await asyncio.sleep(0.3)
    (message,) = slack.messages
    lines = message["text"].split("\n\n")
    assert lines[0].startswith("Digest: 3 firings of &lt;!channel&gt; &amp; co from ")
    assert lines[1:] == ["*Agent* 42: &lt;!here&gt;"] * 2 + ["… and 1 more"]


def test_channels_that_cannot_send_a_digest_refuse_it_by_name() -> None:
    digest = {"window_seconds": 60}
    with pytest.raises(
        ActionConfigError,
        match=r"mcp action: digest: mcp actions cannot send"
        r" digests \(those that can: telegram, rest, slack, discord, email\)",
    ):
        parse_action_config("mcp", {"tool_name": "x", "digest": digest})
    with pytest.raises(ActionConfigError, match="pagerduty actions cannot send digests"):
        parse_action_config(
            "pagerduty", {"routing_key": "R" * 32, "summary_template": "x", "digest": digest}
        )
    with pytest.raises(ActionConfigError, match="a digest is sent as a JSON body"):
        parse_action_config("rest", {"url": "https://x.example", "method": "GET",
                                     "digest": digest})  # fmt: skip
    with pytest.raises(ActionConfigError, match=r"digest\.window_seconds"):
        parse_action_config(
            "slack",
            {
                "webhook_url": "https://hooks.slack.com/x",
                "text_template": "x",
                "digest": {"window_seconds": 0},
            },
        )
    parsed = parse_action_config("slack", {"webhook_url": "https://hooks.slack.com/x",
                                           "text_template": "x", "digest": digest})  # fmt: skip
    assert parsed.digest is not None
    assert parsed.digest.max_items == 10


def test_the_header_names_the_window_and_escapes_the_trigger() -> None:
    start = datetime.fromisoformat("2026-12-04T20:00:00+00:00")
    end = datetime.fromisoformat("2026-12-04T20:01:00+00:00")
    job = Job(id=1, trigger_id="t", trigger_name="a_b", user_id="u", action_id="a",
              action_type="slack", config={}, event_id=None, chain_id=1, attempt=1,
              max_attempts=8, idempotency_key="k", payload={"digest": None},
              digest=Digest(count=1, window_start=start, window_end=end, items=()))  # fmt: skip
    assert digest_header(job, lambda text: text.replace("_", "\\_")) == (
        "Digest: 1 firing of a\\_b from 2026-12-04 20:00:00 to 20:01:00 UTC"
    )


async def _past_window(conn: psycopg.AsyncConnection) -> None:
    """Every firing made an hour ago (one window, due at once)."""
    await conn.execute(
        "UPDATE action_jobs SET created_at = date_trunc('hour', now()) - interval '1 hour'"
    )


async def test_telegram_gets_one_message_valid_in_its_parse_mode(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    """MarkdownV2: the header's dashes and dots and the firings' hostile text arrive
    escaped (the stand-in refuses text Telegram would not parse)."""
    telegram = TelegramServer(token=BOT_TOKEN)
    async with serve_asgi(telegram) as url:
        config = {"chat_id": "1001", "message_template": "Agent {{agent_id}}: {{tag1}}",
                  "parse_mode": "MarkdownV2", "digest": {"window_seconds": 60}}  # fmt: skip
        trigger, action, _ = await create_trigger(conn, "telegram", config, name="low-score.v2")
        await queue_jobs(conn, trigger, action, 12, tag1="_x_ [y](z) 1.5!")
        await _past_window(conn)
        async with running_worker(settings_for(migrated_url, telegram_api_url=url)):
            await eventually(lambda: telegram.messages, timeout=20, what="the digest")
            await asyncio.sleep(0.3)
    (message,) = telegram.messages
    assert plain_markdown_v2_problem(message["text"]) is None
    blocks = message["text"].split("\n\n")
    assert unescape_markdown_v2(blocks[0]).startswith("Digest: 12 firings of low-score.v2 from ")
    assert blocks[1:] == ["Agent 42: \\_x\\_ \\[y\\]\\(z\\) 1\\.5\\!"] * 10 + ["… and 2 more"]


async def test_discord_gets_one_message_without_mentions(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    discord = DiscordWebhook()
    async with serve_asgi(discord) as url:
        config = {"webhook_url": url, "content_template": "Agent {{agent_id}}: {{tag1}}",
                  "digest": {"window_seconds": 60, "max_items": 3}}  # fmt: skip
        trigger, action, _ = await create_trigger(conn, "discord", config)
        await queue_jobs(conn, trigger, action, 4, tag1="@everyone *now*")
        await _past_window(conn)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: discord.messages, timeout=20, what="the digest")
            await asyncio.sleep(0.3)
    (message,) = discord.messages
    assert message["allowed_mentions"] == {"parse": []}
    blocks = message["content"].split("\n\n")
    assert blocks[0].startswith("Digest: 4 firings of test trigger from ")
    assert blocks[1:] == ["Agent 42: @everyone \\*now\\*"] * 3 + ["… and 1 more"]


async def test_email_gets_one_message_with_every_shown_firing(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_smtp(inbox := Inbox()) as server:
        config = {"to": ["ops@example.com"], "subject_template": "Agent {{agent_id}} {{tag1}}",
                  "text_template": "Agent {{agent_id}}: {{tag1}}",
                  "html_template": "<p>Agent {{agent_id}}: {{tag1}}</p>",
                  "digest": {"window_seconds": 60, "max_items": 2}}  # fmt: skip
        trigger, action, _ = await create_trigger(conn, "email", config)
        await queue_jobs(conn, trigger, action, 3, tag1="<b>&</b>")
        await _past_window(conn)
        settings = settings_for(migrated_url, smtp_host="127.0.0.1", smtp_port=server.port,
                                smtp_security="none", smtp_from="alerts@example.com")  # fmt: skip
        async with running_worker(settings):
            await eventually(lambda: inbox.mails, timeout=20, what="the digest")
            await asyncio.sleep(0.3)
    (mail,) = inbox.mails
    assert mail.message["Subject"] == "Digest of 3 firings: Agent 42 <b>&</b>"
    parts = mail.text().split("\n\n----\n\n")
    assert parts[0].startswith("Digest: 3 firings of test trigger from ")
    assert parts[1:] == ["Agent 42: <b>&</b>", "Agent 42: <b>&</b>", "… and 1 more\n"]
    markup = mail.html() or ""
    assert markup.count("<p>Agent 42: &lt;b&gt;&amp;&lt;/b&gt;</p>") == 2
    assert "<p>… and 1 more</p>" in markup


HOSTILE = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["<!channel>", "@everyone", "*_~`|>#-[]().!", "<b>&amp;</b>", "a\r\nb"]),
    st.builds(lambda size: "<&>*_" * size, st.integers(100, 3_000)),
)


def _digest_of(values: list[str], count: int) -> Job:
    start = datetime.fromisoformat("2026-12-04T20:00:00+00:00")
    end = datetime.fromisoformat("2026-12-04T20:05:00+00:00")
    items = tuple(
        Job(id=index + 1, trigger_id="t", trigger_name="<!here> *bold*", user_id="u",
            action_id="a", action_type="slack", config={}, event_id=index + 1, chain_id=1,
            attempt=1, max_attempts=8, idempotency_key=f"k{index}",
            payload={"event": {"agent_id": "42", "tag1": value}, "computed": {}})
        for index, value in enumerate(values)
    )  # fmt: skip
    return replace(items[0], id=99, event_id=None, payload={"digest": {}},
                   digest=Digest(count=count, window_start=start, window_end=end,
                                 items=items))  # fmt: skip


@settings(deadline=None, max_examples=60)
@given(st.lists(HOSTILE, min_size=1, max_size=30), st.integers(0, 1_000))
def test_hostile_firings_in_a_digest_stay_escaped_and_within_each_limit(
    values: list[str], more: int
) -> None:
    job = _digest_of(values, len(values) + more)
    slack = slack_digest_body(SlackConfig(webhook_url="https://h.example",
                                          text_template="{{tag1}}"), job)["text"]  # fmt: skip
    assert len(slack) <= 40_000
    assert "<" not in slack
    assert ">" not in slack
    discord = discord_digest_body(DiscordConfig(webhook_url="https://h.example",
                                                content_template="{{tag1}}"), job)  # fmt: skip
    assert len(discord["content"]) <= 2_000
    assert discord["allowed_mentions"] == {"parse": []}
    telegram = digest_message_body(TelegramConfig(chat_id="1", message_template="{{tag1}}",
                                                  parse_mode="MarkdownV2"), job)["text"]  # fmt: skip
    if len(values[0]) < 1_000:  # a first firing that fits: the whole message does
        assert len(telegram) <= 4_096
    assert plain_markdown_v2_problem(telegram) is None


def test_a_digest_shows_whole_firings_while_they_fit_and_says_how_many_it_left_out() -> None:
    job = _digest_of(["x" * 300] * 100, 250)  # 100 shown at most, 250 in the window
    text = digest_message_body(TelegramConfig(chat_id="1", message_template="{{tag1}}"),
                               job)["text"]  # fmt: skip
    header, *items, more = text.split("\n\n")
    assert header.startswith("Digest: 250 firings of ")
    assert items == ["x" * 300] * 13  # 13 of 302 characters each fit in 4,096
    assert more == "… and 237 more"
    assert len(text) <= 4_096


async def test_under_load_three_workers_fold_every_firing_into_its_windows_digest(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """Thousands of firings in bursts over three 2-second windows, three workers: one digest
    per window, counting exactly the firings made in it and showing the first 100 of them
    in order; every firing folded once."""
    window = 2
    async with webhook_target(conn, box, body_template=None,
                              digest={"window_seconds": window, "max_items": 100}) as (
        sink, _url, trigger, action,
    ):  # fmt: skip
        settings = settings_for(migrated_url, worker_concurrency=16)
        async with running_worker(settings), running_worker(settings), running_worker(settings):
            fired = await _fire_through_windows(conn, trigger, action, window, 3 * window - 0.3,
                                                burst=25, pause=0.02)  # fmt: skip
            await eventually(lambda: _digests_done(conn, fired), timeout=60, what="digests sent")
    firings = await _firings(conn)
    received = {request.key: request.json() for request in sink.received}
    assert len(received) == len(sink.received)  # none sent twice
    cursor = await conn.execute(
        "SELECT idempotency_key, id FROM action_jobs WHERE digest_window IS NOT NULL"
    )
    digest_ids: dict[str, int] = dict(await cursor.fetchall())
    assert set(received) == set(digest_ids)
    counted = 0
    for key, body in received.items():
        start = datetime.fromisoformat(body["digest"]["window_start"])
        end = datetime.fromisoformat(body["digest"]["window_end"])
        made_in_window = sorted(
            (at, e) for e, (at, _, digest) in firings.items() if start <= at < end
        )
        members = {e for e, (_, _, digest) in firings.items() if digest == digest_ids[key]}
        assert members == {e for _, e in made_in_window}  # exactly its window's firings
        assert body["digest"]["count"] == len(members)
        assert [item["event_id"] for item in body["items"]] == [e for _, e in made_in_window[:100]]
        counted += len(members)
    assert counted == fired  # every firing in one digest
    assert len(received) == 3, sorted(b["digest"]["count"] for b in received.values())
    assert fired >= 600, fired
