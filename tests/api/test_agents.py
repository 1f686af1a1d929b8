"""/agents through the real application over a read model built from events: every route,
filters and pages (no repeats, no gaps), the spec summary equal to agents/summaries (and, on a
devnet, to the contract's getSummary), lens explanations, public reads on and off, and bad
input answered with a 422 naming the parameter."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from erc8004_backend.agents import read, service, summaries
from erc8004_backend.agents.lenses import Lens
from erc8004_backend.api.app import Pool
from erc8004_backend.devnet import Devnet
from erc8004_backend.devnet.contracts import REPUTATION
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from tests.agents.test_service import (
    ALICE,
    BOB,
    CAROL,
    CLIENTS,
    VALIDATORS,
    World,
    as_summary_records,
    build_world,
)
from tests.api.conftest import Account, ApiClient, MakeApp, api_settings, client_of
from tests.support.devnet import registry_logs
from tests.support.registry_activity import (
    TAGS1,
    TAGS2,
    feedback_records,
    give_feedback,
    random_address,
    revoke_and_respond,
    setup_chain,
)

A = 31337


@pytest.fixture
async def world(migrated_url: str) -> World:
    async with await psycopg.AsyncConnection.connect(
        migrated_url, autocommit=True, row_factory=dict_row
    ) as conn:
        return await build_world(conn)


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    async with await psycopg.AsyncConnection.connect(
        migrated_url, autocommit=True, row_factory=dict_row
    ) as connection:
        yield connection


async def ok(api: ApiClient, path: str, account: Account | None, **params: Any) -> Any:
    response = await api.get(path, params=params, headers=account.headers if account else None)
    assert response.status_code == 200, response.text
    return response.json()


async def every_page(api: ApiClient, path: str, account: Account, **params: Any
                     ) -> list[dict[str, Any]]:  # fmt: skip
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        page = await ok(api, path, account, **params, **({"cursor": cursor} if cursor else {}))
        items.extend(page["items"])
        if not (cursor := page["next_cursor"]):
            return items
    raise AssertionError("no last page")


def refused(response: httpx.Response, field: str, status: int = 422) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if status == 422:
        assert [d["field"] for d in error["details"]] == [field], error
    message: str = error["message"]
    return message


# -- GET /agents ------------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["newest", "last_activity", "feedback_count"])
async def test_agents_page_through_every_agent_once_in_the_services_order(
    api: ApiClient, alice: Account, world: World, conn: Any, sort: str
) -> None:
    items = await every_page(api, "/agents", alice, sort=sort, limit=4)
    expected = await service.search_agents(conn, service.AgentQuery(sort=sort, limit=100))  # type: ignore[arg-type]
    assert [(i["chain_id"], i["agent_id"]) for i in items] == [
        (e.chain_id, str(e.agent_id)) for e in expected.items
    ]
    assert len({(i["chain_id"], i["agent_id"]) for i in items}) == 15


async def test_agents_filters_in_the_query(api: ApiClient, alice: Account, world: World) -> None:
    async def found(**params: Any) -> list[str]:
        return sorted(i["agent_id"] for i in await every_page(api, "/agents", alice,
                                                              chain_id=A, **params))  # fmt: skip

    assert await found(has_mcp="true") == ["0", "1", "2"]
    assert await found(has_a2a="true", active="true") == ["4"]
    assert await found(x402="false") == ["2", "3", "4"]
    assert await found(text="weather") == ["0", "1"]
    assert await found(owner=CAROL.upper().replace("0X", "0x")) == ["11", "2", "5", "8"]
    assert await found(wallet=CAROL, has_mcp="true") == ["0", "2"]
    (item,) = await every_page(api, "/agents", alice, chain_id=A, text="second file")
    assert item["name"] == "Weather Oracle"
    assert item["owner"] == BOB
    assert item["lens_score"] is None
    heavy = await every_page(api, "/agents", alice, chain_id=A, min_feedback=20)
    assert heavy
    assert all(i["feedback_count"] >= 20 for i in heavy)


async def test_agents_sorted_by_an_inline_or_a_saved_lens(
    api: ApiClient, alice: Account, world: World
) -> None:
    definition = {"vote": "average", "half_life": "3d"}
    inline = await every_page(api, "/agents", alice, chain_id=A, sort="lens",
                              lens=json.dumps(definition), limit=5)  # fmt: skip
    response = await api.post("/me/lenses", json={"name": "avg3d", "lens": definition},
                              headers=alice.headers)  # fmt: skip
    assert response.status_code == 201, response.text
    saved = await every_page(api, "/agents", alice, chain_id=A, sort="lens", lens="avg3d",
                             limit=5)  # fmt: skip
    assert [i["agent_id"] for i in saved] == [i["agent_id"] for i in inline]
    assert len(inline) == 12
    scores = [Decimal(i["lens_score"]) for i in inline if i["lens_score"] is not None]
    assert len(scores) == 9  # agents 9-11 have no feedback: last, unscored
    assert scores == sorted(scores, reverse=True)
    assert [i["lens_score"] for i in inline[9:]] == [None] * 3
    page = await ok(api, "/agents", alice, sort="lens", lens="{}", limit=2)
    assert (page["lens_candidates"], page["lens_candidates_complete"]) == (15, True)


async def test_bad_agents_queries_name_the_parameter(api: ApiClient, alice: Account) -> None:
    async def get(**params: Any) -> httpx.Response:
        return await api.get("/agents", params=params, headers=alice.headers)

    refused(await get(owner="0x123"), "owner")
    refused(await get(has_mcp="1"), "has_mcp")
    refused(await get(sort="best"), "sort")
    refused(await get(limit="0"), "limit")
    refused(await get(limit="101"), "limit")
    refused(await get(min_feedback="-1"), "min_feedback")
    refused(await get(chain_id="1.0"), "chain_id")
    refused(await get(cursor="not-a-cursor"), "cursor")
    refused(await get(lens="{}"), "lens")  # without sort=lens
    refused(await get(sort="lens"), "lens")
    refused(await get(sort="lens", lens='{"half_life": "soon"}'), "lens.half_life")
    refused(await get(sort="lens", lens='{"vote": "latest"'), "lens")
    refused(await get(sort="lens", lens="no such name!"), "lens")
    message = refused(await get(sort="lens", lens="never-saved"), "lens", 404)
    assert "never-saved" in message
    page = (await get(sort="newest", limit="1")).json()
    refused(await get(sort="feedback_count", cursor=page["next_cursor"] or "x"), "cursor")
    # A lens cursor of the right shape whose score is no number (NaN does not compare).
    for score in ("NaN", "sNaN", "Infinity"):
        forged = service.encode_cursor("lens", score, A, 1)
        refused(await get(sort="lens", lens="{}", cursor=forged), "cursor")


# -- one agent --------------------------------------------------------------------------------


async def test_the_profile(api: ApiClient, alice: Account, world: World, conn: Any) -> None:
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        " metadata_key, metadata_value) VALUES (%s, 'identity', 'MetadataSet', %s, 999,"
        " %s, now(), %s, 0, 0, 3, 'color', %s)",
        [A, "0x" + "80" * 20, "0x" + "99" * 32, "0x" + "98" * 32, b"\x01\xff"],
    )
    await conn.execute("SELECT read_model_rebuild(%s)", [A])
    profile = await ok(api, f"/agents/{A}/0", alice)
    assert (profile["owner"], profile["agent_wallet"], profile["agent_uri"]) == (
        BOB, CAROL, "ipfs://agent-0-v2")  # fmt: skip
    assert profile["registration"]["name"] == "Weather Oracle"
    assert profile["registration"]["mcp_endpoint"] == "https://mcp.example/0"
    counted = await read.read_all_feedback(conn, A, 0)
    assert profile["stats"]["feedback_count"] == len(counted)
    assert profile["stats"]["validation_count"] == 3
    assert (await ok(api, f"/agents/{A}/3", alice))["metadata"] == {"color": "0x01ff"}
    assert refused(await api.get(f"/agents/{A}/99", headers=alice.headers), "", 404) == (
        "agent 99 of chain 31337 not found"
    )
    refused(await api.get(f"/agents/{A}/07", headers=alice.headers), "agent_id")
    refused(await api.get("/agents/0/1", headers=alice.headers), "chain_id")


async def test_feedback_pages_in_read_all_feedback_order_with_responses(
    api: ApiClient, alice: Account, world: World, conn: Any
) -> None:
    choices: list[dict[str, Any]] = [
        {}, {"include_revoked": "true"}, {"tag1": "q", "tag2": "day"},
        {"clients": [CLIENTS[2], CLIENTS[0], CLIENTS[2]]},
    ]  # fmt: skip
    for agent in (0, 3, 6):
        for params in choices:
            items = await every_page(api, f"/agents/{A}/{agent}/feedback", alice, limit=3,
                                     **params)  # fmt: skip
            options: dict[str, Any] = {
                "include_revoked": params.get("include_revoked") == "true",
                "tag1": params.get("tag1"), "tag2": params.get("tag2"),
                "clients": params.get("clients"),
            }  # fmt: skip
            expected = await read.read_all_feedback(conn, A, agent, **options)
            assert [(i["client_address"], i["feedback_index"]) for i in items] == [
                (f.client_address, str(f.feedback_index)) for f in expected
            ]
            for item, f in zip(items, expected, strict=True):
                assert (item["value"], item["value_decimals"]) == (str(f.value), f.value_decimals)
                assert len(item["responses"]) == f.response_count
    items = await every_page(api, f"/agents/{A}/0/feedback", alice, include_revoked="true")
    responded = [i for i in items if i["responses"]]
    assert responded
    assert {r["responder"] for i in responded for r in i["responses"]} <= {ALICE, BOB, CAROL}
    bad = await api.get(f"/agents/{A}/0/feedback", params={"clients": ["0x12"]},
                        headers=alice.headers)  # fmt: skip
    refused(bad, "clients[0]")
    refused(await api.get(f"/agents/{A}/0/feedback", params={"include_revoked": "yes"},
                          headers=alice.headers), "include_revoked")  # fmt: skip
    refused(await api.get(f"/agents/{A}/99/feedback", headers=alice.headers), "", 404)


async def test_the_spec_summary_is_summaries_over_the_agents_feedback(
    api: ApiClient, alice: Account, world: World, conn: Any
) -> None:
    rng = random.Random(5)
    for _ in range(25):
        agent = rng.choice(world.agents_a[:9])
        clients = rng.sample(CLIENTS, rng.randint(1, 4))
        tag1 = rng.choice(["", "q", "speed"])
        every = as_summary_records(
            await read.read_all_feedback(conn, A, agent, include_revoked=True)
        )
        expected = summaries.reputation_summary(every, clients, tag1, "")
        body = await ok(api, f"/agents/{A}/{agent}/reputation", alice, clients=clients,
                        tag1=tag1)  # fmt: skip
        spec = body["spec"]
        assert (spec["count"], spec["value"], spec["decimals"]) == (
            expected.counted, str(expected.value), expected.decimals)  # fmt: skip
        exact = Decimal(expected.value).scaleb(-expected.decimals)
        assert Decimal(spec["value_decimal"]) == exact
        assert "E" not in spec["value_decimal"]
        assert body["lens"] is None
    message = refused(await api.get(f"/agents/{A}/0/reputation", headers=alice.headers),
                      "clients")  # fmt: skip
    assert "reverts" in message
    refused(await api.get(f"/agents/{A}/0/reputation", params={"clients": "nope"},
                          headers=alice.headers), "clients[0]")  # fmt: skip


async def test_a_trend_wider_than_ten_years_is_refused(
    api: ApiClient, alice: Account, world: World
) -> None:
    path = f"/agents/{A}/1/reputation"
    assert "3650d" in refused(await api.get(path, params={"lens": "{}", "trend": "3651d"},
                                            headers=alice.headers), "trend")  # fmt: skip
    body = await ok(api, path, alice, lens="{}", trend="3650d")
    assert body["lens"]["trend_width"] == "3650d"


async def test_a_lens_reputation_explains_itself(
    api: ApiClient, alice: Account, world: World, conn: Any
) -> None:
    lens = {"min_agents": 3, "vote": "latest", "explain_top": 2}
    body = await ok(api, f"/agents/{A}/1/reputation", alice, lens=json.dumps(lens),
                    clients=[CLIENTS[0]], trend="1h")  # fmt: skip
    assert body["spec"]["clients"] == [CLIENTS[0]]
    got = body["lens"]
    assert got["name"] is None
    assert got["lens"]["min_agents"] == 3
    report = await service.agent_lens_reputation(conn, A, 1, Lens.model_validate(lens),
                                                 datetime.now(UTC))  # fmt: skip
    explain = report.result.explain
    assert got["explain"]["total"] == explain.total
    assert got["explain"]["counted"] == explain.counted
    assert got["explain"]["excluded"] == dict(explain.excluded)
    assert got["explain"]["excluded_total"] == explain.total - explain.counted
    assert len(got["explain"]["top_clients"]) == min(2, explain.clients_counted)
    assert got["score"] == (None if report.result.score is None else f"{report.result.score:f}")
    assert sum(b["count"] for b in got["distribution"]) == explain.counted
    assert sum(b["count"] for b in got["trend"]) == explain.counted
    assert got["trend_width"] == "1h"
    assert got["activity"]["feedback_count"] == explain.total
    refused(await api.get(f"/agents/{A}/1/reputation", params={"lens": "{}", "trend": "0d"},
                          headers=alice.headers), "trend")  # fmt: skip
    refused(await api.get(f"/agents/{A}/1/reputation", params={"lens": "{}", "trend": "week"},
                          headers=alice.headers), "trend")  # fmt: skip
    refused(await api.get(f"/agents/{A}/1/reputation", params={"lens": '{"vote": "most"}'},
                          headers=alice.headers), "lens.vote")  # fmt: skip


async def test_validations_with_their_summary_and_the_history(
    api: ApiClient, alice: Account, world: World, conn: Any
) -> None:
    choices: list[dict[str, Any]] = [{}, {"validators": VALIDATORS[1:]}, {"tag": "zk"}]
    for agent in range(4):
        for params in choices:
            items = await every_page(api, f"/agents/{A}/{agent}/validations", alice, limit=1,
                                     **params)  # fmt: skip
            validators = params.get("validators")
            every = await read.get_validations(conn, A, agent, validators=validators)
            tag = str(params.get("tag", ""))
            chosen = [v for v in every if not tag or v.response_tag == tag]
            assert [i["request_hash"] for i in items] == [v.request_hash for v in chosen]
            page = await ok(api, f"/agents/{A}/{agent}/validations", alice, **params)
            expected = summaries.validation_summary(
                [summaries.Validation(v.validator_address, v.response, v.response_tag or "")
                 for v in every], validators or (), tag)  # fmt: skip
            assert page["summary"] == {"count": expected.counted,
                                       "average_response": expected.average}  # fmt: skip
    history = await every_page(api, f"/agents/{A}/0/history", alice, limit=2)
    assert [h["change"] for h in history] == [
        "owner", "registered", "wallet", "owner", "wallet", "uri", "wallet"]  # fmt: skip
    assert history[3]["previous_owner"] == ALICE
    assert history[4]["agent_wallet"] is None
    refused(await api.get(f"/agents/{A}/0/validations", params={"validators": "x"},
                          headers=alice.headers), "validators[0]")  # fmt: skip
    refused(await api.get(f"/agents/{A}/0/history", params={"cursor": "e30="},
                          headers=alice.headers), "cursor")  # fmt: skip


# -- who may read -----------------------------------------------------------------------------

ROUTES = ["/agents", f"/agents/{A}/0", f"/agents/{A}/0/feedback",
          f"/agents/{A}/0/reputation?clients={CLIENTS[0]}", f"/agents/{A}/0/validations",
          f"/agents/{A}/0/history"]  # fmt: skip


async def test_without_public_reads_every_route_needs_signing_in(
    api: ApiClient, alice: Account, world: World
) -> None:
    for route in ROUTES:
        assert (await api.get(route)).status_code == 401, route
        assert (await api.get(route, headers=alice.headers)).status_code == 200, route


async def test_public_reads_serve_anyone_under_their_own_limit(
    api: ApiClient, alice: Account, world: World, migrated_url: str, pool: Pool,
    make_app: MakeApp,
) -> None:  # fmt: skip
    settings = api_settings(migrated_url, public_reads=True, rate_limit_public="8/minute")
    async with client_of(make_app(settings, pool)) as public:
        for route in ROUTES:
            assert (await public.get(route)).status_code == 200, route
        # A saved lens is a user's: not without signing in; an inline one is anyone's.
        message = refused(await public.get(f"/agents/{A}/0/reputation?lens=mine"), "", 401)
        assert "sign in" in message
        assert (await public.get(f"/agents/{A}/0/reputation?lens={{}}")).status_code == 200
        limited = await public.get("/agents")
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["Retry-After"]) >= 1
        # Signed-in users are not counted against it; the rest of the API still needs them.
        assert (await public.get("/agents", headers=alice.headers)).status_code == 200
        assert (await public.get("/events")).status_code == 401


# -- against the contract ---------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_the_spec_summary_equals_the_contracts_get_summary(
    devnet: Devnet, migrated_url: str, api: ApiClient, alice: Account
) -> None:
    """Random feedback (decimals 0-18, extreme values, unicode tags), revocations and
    responses on the devnet, indexed into the read model; then the API's summary for random
    agents, client subsets (repeats and strangers included) and tags equals eth_call of the
    registry's getSummary."""
    rng = random.Random(15)
    chain = await setup_chain(devnet, rng)
    await give_feedback(chain, rng)
    start = devnet.registries.block_number
    await revoke_and_respond(chain, feedback_records(await registry_logs(devnet, start)), rng)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        indexer = ChainIndexer(devnet.chain_config(confirmations=0), conn, devnet.rpc)
        await indexer.prepare()
        await indexer.sync_to_head()
        await indexer.close()
    chain_id = devnet.chain_config(confirmations=0).chain_id
    asked = []
    for _ in range(12):
        agent = rng.choice(chain.agents)
        clients = rng.choices([*chain.clients, random_address(rng)], k=rng.randint(1, 5))
        tag1 = rng.choice(["", *TAGS1]) if rng.random() < 0.4 else ""
        tag2 = rng.choice(["", *TAGS2]) if rng.random() < 0.2 else ""
        asked.append((agent, clients, tag1, tag2))
    on_chain = await chain.views(REPUTATION, [("getSummary", a) for a in asked])
    counted = 0
    for (agent, clients, tag1, tag2), answer in zip(asked, on_chain, strict=True):
        shown = [c.upper().replace("0X", "0x") if rng.random() < 0.5 else c for c in clients]
        body = await ok(api, f"/agents/{chain_id}/{agent}/reputation", alice, clients=shown,
                        tag1=tag1, tag2=tag2)  # fmt: skip
        spec = body["spec"]
        assert (spec["count"], int(spec["value"]), spec["decimals"]) == tuple(answer), (
            agent, clients, tag1, tag2)  # fmt: skip
        counted += spec["count"] > 0
    assert counted >= 6
