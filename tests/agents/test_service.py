"""agents/service.py over a read model built from events (tests/support/agent_events.py):
the counts migration 23 keeps equal naive counts through applies, revocations, rebuilds and
roll-backs; searches filter and sort as a plain Python sort of the model would, page by page
without gaps or repeats; the spec summary equals agents/summaries over the same feedback;
lens reports, feedback and validation pages and the history say what the events did."""

from __future__ import annotations

import base64
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from erc8004_backend.agents import lenses, read, service, summaries
from erc8004_backend.agents.lenses import Lens
from erc8004_backend.agents.service import AgentQuery, Page
from tests.support.agent_events import T0, ChainEvents, address
from tests.support.read_model import assert_model_equals_rebuild

A, B = 31337, 84532
ALICE, BOB, CAROL = address(0xA11CE), address(0xB0B), address(0xCA501)
CLIENTS = [address(0xC000 + n) for n in range(8)]
VALIDATORS = [address(0xE000 + n) for n in range(3)]
NOW = T0 + timedelta(days=30)

Conn = psycopg.AsyncConnection[dict[str, Any]]


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(
        migrated_url, autocommit=True, row_factory=dict_row
    ) as connection:
        yield connection


@dataclass
class World:
    a: ChainEvents
    b: ChainEvents
    agents_a: list[int]
    agents_b: list[int]


async def build_world(conn: Conn, seed: int = 7) -> World:
    """Two chains: 12 agents on A (registration files, feedback from 8 clients with mixed
    decimals and tags, revocations, responses, validations, transfers), 3 on B. Two agents
    of A share their first block (a tie in `newest`)."""
    rng = random.Random(seed)
    a, b = ChainEvents(conn, A), ChainEvents(conn, B)
    agents_a = []
    for n in range(12):
        owner = [ALICE, BOB, CAROL][n % 3]
        agents_a.append(await a.register(owner, f"ipfs://agent-{n}", same_block=n == 5))
    agents_b = [await b.register(ALICE, f"ipfs://b-{n}") for n in range(3)]
    names = ["Weather Oracle", "weather bot", "Translator 100%", "Code_Reviewer", "Summarizer"]
    for n, name in enumerate(names):
        await a.registration(
            agents_a[n], f"ipfs://agent-{n}",
            {"name": name, "description": f"agent number {n}", "active": n % 2 == 0,
             "x402Support": n < 2},
            mcp=f"https://mcp.example/{n}" if n < 3 else None,
            a2a=f"https://a2a.example/{n}" if n in (1, 4) else None,
        )  # fmt: skip
    await a.registration(agents_a[5], "ipfs://agent-5", {"name": 42, "active": "yes"})
    for _ in range(160):
        agent = rng.choice(agents_a[:9])  # agents 9-11 get none
        client = rng.choice(CLIENTS)
        decimals = rng.choice([0, 0, 1, 2, 18])
        value = rng.randint(-20, 100) * 10**decimals + rng.randint(0, 9)
        await a.feedback(agent, client, value, decimals, rng.choice(["", "q", "speed"]),
                         rng.choice(["", "day"]))  # fmt: skip
    for (agent, client), last in sorted(a.last_index.items())[::5]:
        await a.revoke(agent, client, rng.randint(1, last))
    for (agent, client), last in sorted(a.last_index.items())[::4]:
        for responder in rng.sample([ALICE, BOB, CAROL], rng.randint(1, 3)):
            await a.respond(agent, client, rng.randint(1, last), responder)
    await b.feedback(agents_b[0], CLIENTS[0], 5)
    for n, agent in enumerate(agents_a[:4]):
        for m, validator in enumerate(VALIDATORS):
            request = f"0x{n:032x}{m:032x}"
            await a.request_validation(agent, validator, request)
            if (n + m) % 3:
                await a.respond_validation(agent, validator, request, 40 + 13 * n + 7 * m,
                                           "zk" if m == 1 else "")  # fmt: skip
    await a.transfer(agents_a[0], ALICE, BOB)
    await a.update_uri(agents_a[0], "ipfs://agent-0-v2", BOB)
    await a.registration(agents_a[0], "ipfs://agent-0-v2",
                         {"name": "Weather Oracle", "description": "the second file",
                          "active": True, "x402Support": True},
                         mcp="https://mcp.example/0")  # fmt: skip
    await a.set_wallet(agents_a[0], CAROL)
    await a.rebuild()
    await b.rebuild()
    return World(a, b, agents_a, agents_b)


@pytest.fixture
async def world(conn: Conn) -> World:
    return await build_world(conn)


async def rows(conn: Conn, query: str, *params: Any) -> list[dict[str, Any]]:
    return await (await conn.execute(query, params)).fetchall()


# -- the counts of migration 23 ---------------------------------------------------------------


async def assert_counts_are_naive_counts(conn: Conn) -> None:
    kept = await rows(conn, "SELECT chain_id, agent_id, feedback_count, revoked_count,"
                            " client_count FROM agent_feedback_stats"
                            " WHERE feedback_count + revoked_count + client_count > 0"
                            " ORDER BY 1, 2")  # fmt: skip
    naive = await rows(conn, """
        SELECT chain_id, agent_id, count(*) FILTER (WHERE NOT revoked) AS feedback_count,
               count(*) FILTER (WHERE revoked) AS revoked_count,
               (SELECT count(*) FROM feedback_clients c
                WHERE c.chain_id = f.chain_id AND c.agent_id = f.agent_id) AS client_count
        FROM feedback f GROUP BY chain_id, agent_id ORDER BY 1, 2""")  # fmt: skip
    assert kept == naive
    kept = await rows(conn, "SELECT chain_id, client_address, feedback_count, agent_count"
                            " FROM client_feedback_stats WHERE agent_count > 0"
                            " ORDER BY 1, 2")  # fmt: skip
    naive = await rows(conn, "SELECT chain_id, client_address, sum(last_index) AS feedback_count,"
                             " count(*) AS agent_count FROM feedback_clients"
                             " GROUP BY 1, 2 ORDER BY 1, 2")  # fmt: skip
    assert kept == naive
    zero = await rows(conn, "SELECT count(*) AS n FROM client_feedback_stats"
                            " WHERE agent_count = 0 AND feedback_count <> 0")  # fmt: skip
    assert zero == [{"n": 0}]


async def test_the_counts_follow_every_way_the_model_changes(conn: Conn) -> None:
    rng = random.Random(3)
    chain = ChainEvents(conn, A)
    agents = [await chain.register(ALICE) for _ in range(4)]
    for batch in range(6):
        for _ in range(15):
            await chain.feedback(rng.choice(agents), rng.choice(CLIENTS), rng.randint(0, 100))
        for (agent, client), last in list(chain.last_index.items())[batch::3]:
            await chain.revoke(agent, client, rng.randint(1, last))
        await chain.apply()  # as the indexer's batches
        await assert_counts_are_naive_counts(conn)
    stats = await rows(conn, "SELECT sum(revoked_count) AS revoked FROM agent_feedback_stats")
    assert stats[0]["revoked"] > 0  # revocations did change counts
    fork = chain.block // 2
    await conn.execute("SELECT read_model_roll_back(%s, %s)", [A, fork])
    await conn.execute("DELETE FROM events WHERE chain_id = %s AND block_number > %s", [A, fork])
    await assert_counts_are_naive_counts(conn)
    await chain.rebuild()
    await assert_counts_are_naive_counts(conn)
    await conn.execute("SELECT read_model_clear(%s)", [A])
    assert await rows(conn, "SELECT * FROM agent_feedback_stats WHERE feedback_count <> 0") == []
    await assert_counts_are_naive_counts(conn)


async def test_a_metadata_key_of_any_length_is_kept(conn: Conn) -> None:
    """A key is any string an agent's owner sets: one of kilobytes (base64 of random bytes,
    which does not compress) made the model's index entry too large for a page, and the
    batch failed for good (migration 46 keys the table by the key's digest)."""
    chain = ChainEvents(conn, A)
    agent = await chain.register(ALICE)
    key = base64.b64encode(random.Random(46).randbytes(9000)).decode()
    await chain.event("MetadataSet", agent_id=agent, metadata_key=key, metadata_value=b"\x01")
    await chain.event("MetadataSet", agent_id=agent, metadata_key="color", metadata_value=b"\x02")
    await chain.apply()
    await chain.event("MetadataSet", agent_id=agent, metadata_key=key, metadata_value=b"\x03")
    await chain.apply()  # the latest value, under the same key
    kept = await rows(conn, "SELECT key, value FROM agent_metadata WHERE agent_id = %s"
                            " ORDER BY key", agent)  # fmt: skip
    assert [(row["key"], bytes(row["value"])) for row in kept] == [
        (key, b"\x03"), ("color", b"\x02")]  # fmt: skip
    profile = await read.get_agent(conn, A, agent)
    assert profile is not None
    assert profile.metadata[key] == b"\x03"
    await assert_model_equals_rebuild(conn, A)


async def test_feedback_under_a_key_met_again_or_without_an_index_is_worked_out_in_full(
    conn: Conn,
) -> None:
    """A batch's feedback goes in as it comes unless one has no index ('v0') or its key is
    met again (read_model_apply, migration 42): such a batch is worked out by the full
    statement, which numbers 'v0' feedback and lets the later of two under a key stand."""
    chain = ChainEvents(conn, A)
    first, second = await chain.register(ALICE), await chain.register(BOB)

    async def given(agent_id: int, client: str, index: int | None, value: int) -> None:
        await chain.event("NewFeedback", agent_id=agent_id, client_address=client,
                          feedback_index=index, value=value, value_decimals=0, tag1="",
                          tag2="", endpoint="", file_uri="", file_hash="0x" + "00" * 32)  # fmt: skip

    await chain.feedback(first, CAROL, 10)
    await chain.feedback(first, CAROL, 20)
    await chain.feedback(second, CAROL, 30)
    await chain.apply()
    await chain.revoke(first, CAROL, 1)
    await chain.apply()
    await assert_counts_are_naive_counts(conn)
    await given(first, CAROL, 1, 11)  # again under a key stored and revoked
    await chain.feedback(second, CLIENTS[0], 40)
    await chain.apply()
    await assert_counts_are_naive_counts(conn)
    await given(second, CLIENTS[1], 5, 50)  # one key twice in one batch
    await given(second, CLIENTS[1], 5, 55)
    await given(second, CLIENTS[2], None, 60)  # 'v0': numbered after the pair's last
    await given(second, CLIENTS[2], None, 70)
    await chain.feedback(first, CLIENTS[3], 80)
    await chain.apply()
    await assert_counts_are_naive_counts(conn)

    feedback = await rows(conn, "SELECT agent_id, client_address, feedback_index, value, revoked"
                                " FROM feedback ORDER BY 1, 2, 3")  # fmt: skip
    assert [tuple(row.values()) for row in feedback] == sorted([
        (first, CAROL, 1, 11, False), (first, CAROL, 2, 20, False),
        (first, CLIENTS[3], 1, 80, False), (second, CAROL, 1, 30, False),
        (second, CLIENTS[0], 1, 40, False), (second, CLIENTS[1], 5, 55, False),
        (second, CLIENTS[2], 1, 60, False), (second, CLIENTS[2], 2, 70, False),
    ])  # fmt: skip
    await assert_model_equals_rebuild(conn, A)


# -- search -----------------------------------------------------------------------------------


async def all_pages(conn: Conn, query: AgentQuery) -> list[service.AgentSummary]:
    items: list[service.AgentSummary] = []
    cursor = None
    for _ in range(100):
        page = await service.search_agents(conn, _with(query, cursor=cursor))
        assert len(page.items) <= query.limit
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("no last page")


def _with(query: AgentQuery, **changes: Any) -> AgentQuery:
    return AgentQuery(**{**query.__dict__, **changes})


def keys(items: list[service.AgentSummary]) -> list[tuple[int, int]]:
    return [(item.chain_id, item.agent_id) for item in items]


@pytest.mark.parametrize("sort", ["newest", "last_activity", "feedback_count"])
@pytest.mark.parametrize("limit", [1, 4, 50])
async def test_every_sort_pages_through_every_agent_in_order_once(
    conn: Conn, world: World, sort: str, limit: int
) -> None:
    items = await all_pages(conn, AgentQuery(sort=sort, limit=limit))  # type: ignore[arg-type]
    assert len(items) == 15
    assert len(set(keys(items))) == 15
    model = await rows(conn, "SELECT chain_id, agent_id, first_at, last_at FROM agents")
    counts = await rows(conn, "SELECT chain_id, agent_id, count(*) AS n FROM feedback"
                              " WHERE NOT revoked GROUP BY 1, 2")  # fmt: skip
    count_of = {(r["chain_id"], int(r["agent_id"])): r["n"] for r in counts}
    key: Callable[[dict[str, Any]], Any] = {
        "newest": lambda r: r["first_at"],
        "last_activity": lambda r: r["last_at"],
        "feedback_count": lambda r: count_of.get((r["chain_id"], int(r["agent_id"])), 0),
    }[sort]
    expected = sorted(model, key=lambda r: (key(r), r["chain_id"], r["agent_id"]), reverse=True)
    assert keys(items) == [(r["chain_id"], int(r["agent_id"])) for r in expected]
    assert [item.feedback_count for item in items] == [count_of.get(k, 0) for k in keys(items)]


async def test_newest_breaks_a_tie_of_first_times_by_chain_and_agent(
    conn: Conn, world: World
) -> None:
    items = await all_pages(conn, AgentQuery(chain_id=A, limit=1))
    tied = [item for item in items if item.first_at == items[6].first_at]
    assert keys(tied) == [(A, 5), (A, 4)]  # agent 5 was registered in agent 4's block


async def test_filters_select_as_the_registration_file_and_model_say(
    conn: Conn, world: World
) -> None:
    async def found(**filters: Any) -> list[int]:
        items = await all_pages(conn, AgentQuery(chain_id=A, limit=3, **filters))
        return sorted(item.agent_id for item in items)

    assert await found(has_mcp=True) == [0, 1, 2]
    assert len(await found(has_mcp=False)) == 9
    assert await found(has_a2a=True) == [1, 4]
    assert await found(active=True) == [0, 2, 4]
    assert await found(active=False) == [1, 3]  # agent 5's "yes" is not a boolean
    assert await found(x402=True) == [0, 1]
    assert await found(text="WEATHER") == [0, 1]
    assert await found(text="100%") == [2]  # % is a character, not a wildcard
    assert await found(text="e_r") == [3]  # as is _
    assert await found(text="number 4") == [4]
    assert await found(text="second file") == [0]
    assert await found(text="42") == []  # a name that is not a string is no name
    # What ILIKE matches, in any script: the search compares the name and description folded
    # to lower case when the file was stored (migration 39) with LIKE.
    await world.a.registration(world.agents_a[6], "ipfs://agent-6",
                               {"name": "Ünïcode ÇAFÉ Agent", "description": "ΣΟΦΙΑ σοφία"})  # fmt: skip
    for text in ["üNÏCODE", "çafé", "σοφια", "ΣΟΦΊΑ", "agent", "NUMBER", "ß", "\\", "_"]:
        expected = await rows(
            conn, "SELECT a.agent_id FROM agents AS a JOIN agent_registrations AS r"
                  " ON r.chain_id = a.chain_id AND r.agent_id = a.agent_id"
                  " AND r.agent_uri = a.agent_uri WHERE a.chain_id = %s"
                  " AND (r.file_name ILIKE %s OR r.file_description ILIKE %s)",
            A, service._like_pattern(text), service._like_pattern(text),
        )  # fmt: skip
        assert await found(text=text) == sorted(int(row["agent_id"]) for row in expected), text
    assert await found(text="üNÏCODE") == [6]
    assert await found(owner=CAROL.upper().replace("0X", "0x")) == [2, 5, 8, 11]
    assert await found(owner=BOB) == [0, 1, 4, 7, 10]  # agent 0 was transferred to Bob
    assert await found(wallet=CAROL) == [0, 2, 5, 8, 11]
    counts = {item.agent_id: item.feedback_count
              for item in await all_pages(conn, AgentQuery(chain_id=A))}  # fmt: skip
    assert await found(min_feedback=15) == sorted(a for a, n in counts.items() if n >= 15)
    assert await found(min_feedback=1, has_mcp=True, active=True) == [0, 2]
    everywhere = await all_pages(conn, AgentQuery(owner=ALICE))
    assert {item.chain_id for item in everywhere} == {A, B}


async def test_a_listing_item_shows_its_registration_file_and_counts(
    conn: Conn, world: World
) -> None:
    items = await all_pages(conn, AgentQuery(chain_id=A, text="Weather Oracle"))
    (item,) = items
    # Agent 0's URI changed: the file read from its current URI is its file.
    assert (item.agent_uri, item.registration_status, item.description) == (
        "ipfs://agent-0-v2", "fetched", "the second file")  # fmt: skip
    assert (item.name, item.active, item.x402_support, item.mcp_endpoint) == (
        "Weather Oracle", True, True, "https://mcp.example/0")  # fmt: skip
    assert await all_pages(conn, AgentQuery(chain_id=A, text="agent number 0")) == []
    assert (item.owner, item.agent_wallet) == (BOB, CAROL)


async def test_a_cursor_of_another_listing_or_garbage_names_the_cursor(
    conn: Conn, world: World
) -> None:
    page = await service.search_agents(conn, AgentQuery(sort="newest", limit=2))
    assert page.next_cursor
    for cursor, sort in [(page.next_cursor, "feedback_count"), ("bm9wZQ==", "newest"),
                         ("!!", "newest")]:  # fmt: skip
        with pytest.raises(service.AgentQueryError) as refused:
            await service.search_agents(conn, AgentQuery(sort=sort, cursor=cursor))  # type: ignore[arg-type]
        assert refused.value.field == "cursor"


async def test_the_lens_sort_ranks_the_candidates_by_their_lens_scores(
    conn: Conn, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lens = Lens(vote="latest", half_life="10d")
    query = AgentQuery(chain_id=A, sort="lens", lens=lens, now=NOW, limit=2)
    items = await all_pages(conn, query)
    assert len(items) == 12
    assert len(set(keys(items))) == 12
    expected = []
    for agent in world.agents_a:
        feedback = await read.read_all_feedback(conn, A, agent, include_revoked=True)
        entries = [lenses.FeedbackEntry(f.client_address, f.feedback_index, f.value,
                                        f.value_decimals, f.tag1 or "", f.tag2 or "", f.revoked,
                                        f.block_time) for f in feedback]  # fmt: skip
        expected.append((agent, lenses.apply_lens(lens, entries, {}, NOW).score))
    scored = sorted([e for e in expected if e[1] is not None], key=lambda e: (e[1], e[0]),
                    reverse=True)  # fmt: skip
    unscored = sorted([e for e in expected if e[1] is None], reverse=True)
    assert [(item.agent_id, item.lens_score) for item in items] == scored + unscored

    monkeypatch.setattr(service, "LENS_SORT_CANDIDATES", 3)
    page = await service.search_agents(conn, _with(query, limit=10))
    assert (page.lens_candidates, page.lens_candidates_complete) == (3, False)
    most = await all_pages(conn, AgentQuery(chain_id=A, sort="feedback_count", limit=3))
    assert {item.agent_id for item in page.items} == {item.agent_id for item in most[:3]}

    monkeypatch.setattr(service, "LENS_SORT_MAX_FEEDBACK", 1)
    page = await service.search_agents(conn, _with(query, limit=10))
    assert page.lens_candidates == 1  # always one, however much feedback it has


async def test_the_lens_sort_needs_a_lens_and_only_it_takes_one(conn: Conn) -> None:
    with pytest.raises(service.AgentQueryError, match="lens"):
        await service.search_agents(conn, AgentQuery(sort="lens", now=NOW))
    with pytest.raises(service.AgentQueryError, match="lens"):
        await service.search_agents(conn, AgentQuery(sort="newest", lens=Lens()))


# -- one agent --------------------------------------------------------------------------------


async def test_the_profile_has_the_models_agent_and_its_counts(conn: Conn, world: World) -> None:
    detail = await service.get_agent(conn, A, world.agents_a[0])
    assert detail is not None
    assert (detail.profile.owner, detail.profile.agent_uri, detail.profile.agent_wallet) == (
        BOB, "ipfs://agent-0-v2", CAROL)  # fmt: skip
    counted = await read.read_all_feedback(conn, A, 0)
    every = await read.read_all_feedback(conn, A, 0, include_revoked=True)
    assert (detail.stats.feedback_count, detail.stats.revoked_count) == (
        len(counted), len(every) - len(counted))  # fmt: skip
    assert detail.stats.client_count == len(await read.get_clients(conn, A, 0))
    assert detail.stats.validation_count == 3
    assert await service.get_agent(conn, A, 999) is None


def as_summary_records(feedback: list[read.Feedback]) -> list[summaries.Feedback]:
    return [summaries.Feedback(f.client_address, f.feedback_index, f.value, f.value_decimals,
                               f.tag1 or "", f.tag2 or "", f.revoked) for f in feedback]  # fmt: skip


async def test_the_spec_summary_is_summaries_over_all_the_agents_feedback(
    conn: Conn, world: World
) -> None:
    rng = random.Random(11)
    checked = Counter[bool]()
    for _ in range(60):
        agent = rng.choice(world.agents_a[:9])
        every = as_summary_records(
            await read.read_all_feedback(conn, A, agent, include_revoked=True)
        )
        clients = rng.sample(CLIENTS, rng.randint(1, 4))
        if rng.random() < 0.3:
            clients.append(clients[0])  # counted twice, as in the contract
        tag1, tag2 = rng.choice(["", "q", "speed", "none"]), rng.choice(["", "day"])
        shown = [c.upper().replace("0X", "0x") if rng.random() < 0.3 else c for c in clients]
        got = await service.agent_reputation(conn, A, agent, clients=shown, tag1=tag1, tag2=tag2)
        expected = summaries.reputation_summary(every, clients, tag1, tag2)
        assert (got.count, got.value, got.decimals) == tuple(expected)
        assert got.clients == tuple(clients)
        assert got.value_decimal == Decimal(expected.value).scaleb(-expected.decimals)
        checked[expected.counted > 0] += 1
    assert checked[True] > 20
    assert checked[False] > 0


async def test_the_spec_summary_refuses_no_clients_and_unknown_agents(
    conn: Conn, world: World
) -> None:
    with pytest.raises(service.AgentQueryError) as refused:
        await service.agent_reputation(conn, A, 0, clients=[])
    assert refused.value.field == "clients"
    assert "reverts" in refused.value.problem
    with pytest.raises(service.AgentNotFoundError):
        await service.agent_reputation(conn, A, 999, clients=[CLIENTS[0]])


async def test_a_lens_report_explains_from_the_clients_chain_wide_history(
    conn: Conn, world: World
) -> None:
    # A client with feedback to one agent only: trusted by no min_agents=2 lens.
    loner = address(0x10AE)
    await world.a.feedback(1, loner, 1)
    await world.a.apply()
    lens = Lens(min_agents=2, half_life="7d")
    report = await service.agent_lens_reputation(conn, A, 1, lens, NOW,
                                                 trend_width=timedelta(days=1))  # fmt: skip
    every = await read.read_all_feedback(conn, A, 1, include_revoked=True)
    explain = report.result.explain
    assert explain.total == len(every)
    revoked = sum(1 for f in every if f.revoked)
    assert explain.excluded["revoked"] == revoked
    assert explain.excluded["untrusted_client"] == 1
    assert explain.untrusted_clients == 1
    assert explain.counted == len(every) - revoked - 1
    histories = await service.client_histories(conn, A, 1)
    assert histories[loner] == lenses.ClientHistory(1, 1)
    counts = Counter(f.client_address for f in await rows_feedback(conn))
    agents = {c: len({a for (a, cc) in world.a.last_index if cc == c}) for c in counts}
    for client, history in histories.items():
        assert history == lenses.ClientHistory(counts[client], agents[client])
    counted = [item.feedback for item in report.result.counted]
    assert report.trend == lenses.trend(counted, timedelta(days=1))
    assert sum(bucket.count for bucket in report.distribution) == len(counted)
    assert report.activity.feedback_count == len(every)
    assert report.activity.revoked_count == revoked
    assert report.activity.responded_count == sum(1 for f in every if f.response_count)


def random_lens(rng: random.Random) -> Lens:
    """A lens with any of its choices, drawn."""
    definition: dict[str, Any] = {"vote": rng.choice(["each", "latest", "average"])}
    if rng.random() < 0.3:
        definition["allowlist"] = [*rng.sample(CLIENTS, rng.randint(1, 5)), address(0xF00)]
    if rng.random() < 0.5:
        definition["min_feedback"] = rng.randint(0, 30)
    if rng.random() < 0.5:
        definition["min_agents"] = rng.randint(0, 9)
    if rng.random() < 0.7:
        definition["half_life"] = rng.choice(["1s", "1h", "3d", "30d", "999999999d"])
    if rng.random() < 0.3:
        definition["tag1"] = rng.choice(["", "q", "speed", "none"])
    if rng.random() < 0.3:
        definition["tag2"] = rng.choice(["day", "night"])
    definition["include_revoked"] = rng.random() < 0.3
    definition["explain_top"] = rng.choice([0, 1, 3, 100])
    return Lens.model_validate(definition)


async def test_a_lens_report_is_apply_lens_over_every_feedback_of_the_agent(
    conn: Conn, world: World
) -> None:
    # PostgreSQL chooses what the lens counts (lens_votes) and Python weighs only that: the
    # report must be what the pure functions make of all the agent's feedback. (Values with
    # more decimals than the registries' 18 too: the int8 of a uint8 allows them.)
    await world.a.feedback(world.agents_a[2], CLIENTS[1], -123456789, 19, "q")
    await world.a.feedback(world.agents_a[2], CLIENTS[2], 10**30 + 7, 30)
    await world.a.apply()
    rng = random.Random(5)
    counted_any = 0
    for _ in range(80):
        agent = rng.choice(world.agents_a)  # 9-11 have no feedback
        lens = random_lens(rng)
        every = await read.read_all_feedback(conn, A, agent, include_revoked=True)
        entries = [lenses.FeedbackEntry(f.client_address, f.feedback_index, f.value,
                                        f.value_decimals, f.tag1 or "", f.tag2 or "",
                                        f.revoked, f.block_time, f.response_count)
                   for f in every]  # fmt: skip
        histories = await service.client_histories(conn, A, agent)
        expected = lenses.apply_lens(lens, entries, histories, NOW)
        width = rng.choice([timedelta(hours=1), timedelta(days=1), timedelta(days=7)])
        report = await service.agent_lens_reputation(conn, A, agent, lens, NOW,
                                                     trend_width=width)  # fmt: skip
        got = report.result
        assert (got.score, got.explain, got.as_of) == (
            expected.score, expected.explain, expected.as_of)  # fmt: skip
        key = lambda c: (c.feedback.client, c.feedback.feedback_index)  # noqa: E731
        assert sorted(got.counted, key=key) == sorted(expected.counted, key=key)
        chosen = [c.feedback for c in expected.counted]
        assert report.distribution == lenses.score_distribution(chosen)
        assert report.trend == lenses.trend(chosen, width)
        assert report.activity == lenses.activity(entries)
        # Without the counted feedback, the same report (and they are still counted).
        brief = await service.agent_lens_reputation(conn, A, agent, lens, NOW,
                                                    trend_width=width, counted_feedback=False)  # fmt: skip
        assert brief.result.counted == ()
        assert (brief.result.score, brief.result.explain, brief.distribution, brief.trend,
                brief.activity) == (got.score, got.explain, report.distribution, report.trend,
                                    report.activity)  # fmt: skip
        counted_any += got.explain.counted > 0
    assert counted_any > 30


async def stamps(conn: Conn) -> dict[int, Any]:
    found = await rows(conn, "SELECT chain_id, stamp FROM read_model_stamps")
    return {row["chain_id"]: row["stamp"] for row in found}


async def test_kept_lens_votes_hold_until_their_chains_model_changes(
    conn: Conn, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every agent is kept here (min_feedback 1); after each kind of change to the model
    # (a batch of feedback, a revocation, a response, a roll-back, a rebuild) a report is
    # what a read without the cache gives, and between changes it comes from the cache.
    kept = service.LensVotesCache(max_votes=10_000, min_feedback=1)
    monkeypatch.setattr(service, "LENS_VOTES_CACHE", kept)
    agent, chain = world.agents_a[1], world.a
    lens = Lens.model_validate({"vote": "latest", "min_agents": 2, "half_life": "3d"})

    async def report_is_uncached_one() -> lenses.LensResult:
        got = (await service.agent_lens_reputation(conn, A, agent, lens, NOW)).result
        with monkeypatch.context() as uncached:
            uncached.setattr(service, "LENS_VOTES_CACHE",
                             service.LensVotesCache(max_votes=0, min_feedback=1))  # fmt: skip
            fresh = (await service.agent_lens_reputation(conn, A, agent, lens, NOW)).result
        assert (got.score, got.explain, list(got.counted)) == (
            fresh.score, fresh.explain, list(fresh.counted))  # fmt: skip
        return got

    async def changed(change: Callable[[], Awaitable[Any]]) -> None:
        before = await stamps(conn)
        hits = kept.hits
        await report_is_uncached_one()
        assert kept.hits == hits + 1  # kept since the last report
        await change()
        after = await stamps(conn)
        assert after[A] != before[A]
        assert after[B] == before[B]  # only the chain that changed
        misses = kept.misses
        await report_is_uncached_one()
        assert kept.misses == misses + 1  # read again

    await report_is_uncached_one()
    await chain.feedback(agent, CLIENTS[3], 99)
    await chain.feedback(agent, CLIENTS[4], 7, 1)
    await changed(chain.apply)
    await changed(lambda: _revoke_and_apply(chain, agent, CLIENTS[3]))
    await changed(lambda: _respond_and_apply(chain, agent, CLIENTS[3]))
    fork = chain.block - 2
    await changed(lambda: conn.execute("SELECT read_model_roll_back(%s, %s)", [A, fork]))
    await changed(chain.rebuild)
    assert len(kept) > 0


async def _revoke_and_apply(chain: ChainEvents, agent: int, client: str) -> None:
    await chain.revoke(agent, client, chain.last_index[agent, client])
    await chain.apply()


async def _respond_and_apply(chain: ChainEvents, agent: int, client: str) -> None:
    await chain.respond(agent, client, chain.last_index[agent, client], ALICE)
    await chain.apply()


def _votes(total: int, count: int) -> Any:
    votes = lenses.Votes([f"0x{n:040x}" for n in range(count)], [1] * count, [0] * count)
    return service._AgentVotes(total, {}, 0, lenses.activity_of_counts(0, 0, 0, 0), votes,
                               [], [], [])  # fmt: skip


def test_the_lens_votes_cache_keeps_busy_agents_and_the_most_recently_used_within_its_bound(
) -> None:  # fmt: skip
    cache = service.LensVotesCache(max_votes=10, min_feedback=3)
    stamp, newer = uuid.uuid4(), uuid.uuid4()

    def key(agent: int) -> tuple[int, int, bool, tuple[Any, ...]]:
        return (A, agent, False, ())

    cache.put(key(1), stamp, _votes(total=2, count=2))  # too few feedback to keep
    cache.put(key(2), None, _votes(total=5, count=5))  # no stamp: nothing to check it by
    cache.put(key(3), stamp, _votes(total=50, count=11))  # more votes than the whole bound
    assert len(cache) == 0
    cache.put(key(4), stamp, _votes(total=4, count=4))
    cache.put(key(5), stamp, _votes(total=4, count=4))
    assert cache.get(key(4), stamp) is not None  # now the most recently used
    cache.put(key(6), stamp, _votes(total=4, count=4))  # 12 votes: the least recent goes
    assert cache.get(key(5), stamp) is None
    assert cache.get(key(4), stamp) is not None
    assert cache.get(key(6), stamp) is not None
    assert cache.get(key(4), newer) is None  # the model changed: forgotten
    assert len(cache) == 1
    assert cache.get(key(6), None) is None
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (3, 3)


async def rows_feedback(conn: Conn) -> list[read.Feedback]:
    """Every feedback of chain A (revoked included) as records."""
    found = await rows(conn, "SELECT * FROM feedback WHERE chain_id = %s", A)
    return [read.feedback(row) for row in found]


async def test_an_unknown_agent_is_not_found_by_every_per_agent_function(conn: Conn) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: service.agent_lens_reputation(conn, A, 5, Lens(), NOW),
        lambda: service.list_feedback(conn, A, 5),
        lambda: service.list_validations(conn, A, 5),
        lambda: service.validation_summary(conn, A, 5),
        lambda: service.agent_history(conn, A, 5),
    ]
    for call in calls:
        with pytest.raises(service.AgentNotFoundError, match="agent 5 of chain 31337"):
            await call()


# -- feedback, validations, history -----------------------------------------------------------


async def all_feedback(conn: Conn, agent: int, limit: int, **options: Any
                       ) -> list[service.FeedbackItem]:  # fmt: skip
    items: list[service.FeedbackItem] = []
    cursor = None
    while True:
        page = await service.list_feedback(conn, A, agent, page=Page(limit, cursor), **options)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


@pytest.mark.parametrize("limit", [1, 3, 500])
async def test_feedback_pages_are_read_all_feedback_in_its_order(
    conn: Conn, world: World, limit: int
) -> None:
    rng = random.Random(limit)
    for agent in world.agents_a[:9:2]:
        choices: list[dict[str, Any]] = [
            {}, {"include_revoked": True}, {"tag1": "q"}, {"tag2": "day"},
            {"clients": [CLIENTS[3], CLIENTS[1], CLIENTS[3]]},
            {"clients": rng.sample(CLIENTS, 3), "tag1": "speed", "include_revoked": True},
        ]  # fmt: skip
        for options in choices:
            got = await all_feedback(conn, agent, limit, **options)
            expected = await read.read_all_feedback(conn, A, agent, **options)
            assert [item.feedback for item in got] == expected


async def test_feedback_comes_with_its_responses_in_chain_order(
    conn: Conn, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    responded = 0
    for agent in world.agents_a[:9]:
        for item in await all_feedback(conn, agent, 7, include_revoked=True):
            f = item.feedback
            expected = await read.get_responses(conn, A, agent, f.client_address,
                                                f.feedback_index)  # fmt: skip
            assert list(item.responses) == expected
            responded += bool(expected)
    assert responded > 5
    monkeypatch.setattr(service, "RESPONSES_PER_FEEDBACK", 1)
    items = await all_feedback(conn, world.agents_a[0], 50, include_revoked=True)
    assert all(len(item.responses) == min(1, item.feedback.response_count) for item in items)


async def test_validation_pages_and_summary_are_the_registry_views(
    conn: Conn, world: World
) -> None:
    for agent in world.agents_a[:4]:
        for validators in [None, VALIDATORS[:1], [VALIDATORS[2], VALIDATORS[1]]]:
            for tag in ["", "zk"]:
                pages: list[read.ValidationRequest] = []
                cursor = None
                while True:
                    page = await service.list_validations(
                        conn, A, agent, validators=validators, tag=tag, page=Page(1, cursor)
                    )
                    pages.extend(page.items)
                    if not (cursor := page.next_cursor):
                        break
                every = await read.get_validations(conn, A, agent, validators=validators)
                assert pages == [v for v in every if not tag or v.response_tag == tag]
                summary = await service.validation_summary(conn, A, agent,
                                                           validators=validators, tag=tag)  # fmt: skip
                records = [summaries.Validation(v.validator_address, v.response,
                                                v.response_tag or "") for v in every]  # fmt: skip
                assert summary == summaries.validation_summary(records, validators or (), tag)
    summary = await service.validation_summary(conn, A, world.agents_a[1])
    assert summary.counted == 2  # (1 + m) % 3 != 0 for m = 0 and 1


async def test_the_history_is_the_agents_identity_changes_in_chain_order(
    conn: Conn, world: World
) -> None:
    entries: list[service.HistoryEntry] = []
    cursor = None
    while True:
        page = await service.agent_history(conn, A, world.agents_a[0], Page(2, cursor))
        entries.extend(page.items)
        if not (cursor := page.next_cursor):
            break
    assert [(e.change, e.owner, e.previous_owner, e.agent_uri, e.agent_wallet)
            for e in entries] == [
        ("owner", ALICE, None, None, None),
        ("registered", ALICE, None, "ipfs://agent-0", None),
        ("wallet", None, None, None, ALICE),
        ("owner", BOB, ALICE, None, None),
        ("wallet", None, None, None, None),  # cleared by the transfer
        ("uri", None, None, "ipfs://agent-0-v2", None),
        ("wallet", None, None, None, CAROL),
    ]  # fmt: skip
    assert entries[5].updated_by == BOB
    blocks = [(e.block_number, e.log_index) for e in entries]
    assert blocks == sorted(blocks)
