"""/agents over HTTP against the registries' view functions, digit for digit (issue 15).

Random activity goes to a devnet through the registries' own functions
(tests/support/registry_activity.py): feedback with decimals 0-18, negative and extreme
values, empty, unicode and confusable tags, from many clients (the zero address among them);
revocations; responses, some repeated; validation requests and responses, some answered
again; transfers (to owners, to newcomers, to the owner itself; by approved operators),
agent wallets unset, URIs and metadata changed, agents registered. The real indexer indexes
it into a throwaway database, partly while it happens, and the real application serves the
read model over HTTP on 127.0.0.1. Then, for random agents, client lists (clients that never
gave feedback, repeats, the zero address, any case) and tags (empty, unicode, confusable,
absent), what the API answers must equal `eth_call` of:

- ReputationRegistry.getSummary: /reputation's spec (count, value, decimals);
- readAllFeedback: /feedback, every page (clients, indexes, values, decimals, tags, revoked),
  with and without include_revoked and a client list;
- getClients and getLastIndex: the client order and the indexes of an agent's whole /feedback;
- getResponseCount: each feedback's response_count and responses (by responder), and their
  sums per client and per agent;
- ValidationRegistry.getSummary, getAgentValidations and getValidationStatus: /validations'
  summary and items;
- IdentityRegistry.ownerOf, balanceOf, getAgentWallet, tokenURI and getMetadata: the profile,
  and /agents filtered by owner and by wallet.

The seed is new on each run (fixed under CI; ERC8004_TEST_SEED=n repeats one); the test
prints it, so a failure shows it.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from erc8004_backend.agents.service import RESPONSES_PER_FEEDBACK
from erc8004_backend.agents.summaries import INT128_MAX
from erc8004_backend.api.app import Pool
from erc8004_backend.devnet import Devnet
from erc8004_backend.devnet.contracts import IDENTITY, REPUTATION, VALIDATION
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from tests.api.conftest import MakeApp, api_settings, make_account
from tests.support.asgi import serve_asgi
from tests.support.devnet import registry_logs
from tests.support.registry_activity import (
    CONFUSABLE_TAGS1,
    CONFUSABLE_TAGS2,
    CONFUSABLE_VALIDATION_TAGS,
    TAGS1,
    TAGS2,
    VALIDATION_TAGS,
    ZERO,
    Chain,
    answer_validations,
    change_identities,
    feedback_records,
    give_feedback,
    overflow_the_summary,
    random_address,
    request_validations,
    revoke_and_respond,
    setup_chain,
    transfer_agents,
)

pytestmark = [pytest.mark.timeout(120)]

SEED_VARIABLE = "ERC8004_TEST_SEED"
SUMMARY_QUERIES = 150
FEEDBACK_QUERIES = 50
VALIDATION_QUERIES = 60
PAGE_SIZES = [1, 3, 3, 8, 50, 50, 200]
AGENT_PAGE_SIZES = [1, 2, 100]
ALL_TAGS1 = [*TAGS1, *CONFUSABLE_TAGS1]
ALL_TAGS2 = [*TAGS2, *CONFUSABLE_TAGS2]
ALL_VALIDATION_TAGS = [*VALIDATION_TAGS, *CONFUSABLE_VALIDATION_TAGS]


def run_seed() -> int:
    if SEED_VARIABLE in os.environ:
        return int(os.environ[SEED_VARIABLE])
    return 8004 if os.environ.get("CI") else random.randrange(2**32)


@dataclass
class Api:
    """The application over HTTP, signed in, with the dice for how to ask."""

    http: httpx.AsyncClient
    headers: dict[str, str]
    chain_id: int
    rng: random.Random

    async def get(self, path: str, params: dict[str, Any]) -> Any:
        response = await self.http.get(path, params=params, headers=self.headers)
        assert response.status_code == 200, (path, params, response.text)
        return response.json()

    async def every_page(
        self, path: str, params: dict[str, Any], sizes: list[int] = PAGE_SIZES
    ) -> tuple[list[Any], Any]:
        """Every page's items, pages of a random one of `sizes`, and the first page."""
        params = {**params, "limit": self.rng.choice(sizes)}
        first = page = await self.get(path, params)
        items = list(page["items"])
        for _ in range(1000):
            if page["next_cursor"] is None:
                return items, first
            page = await self.get(path, {**params, "cursor": page["next_cursor"]})
            items += page["items"]
        raise AssertionError(f"{path} {params}: no last page")

    def agent(self, agent_id: int, route: str = "") -> str:
        return f"/agents/{self.chain_id}/{agent_id}{route}"

    def spelled(self, addresses: list[str]) -> list[str]:
        """The addresses in lower or upper case, at random (the API takes any case)."""
        return [a if self.rng.random() < 0.5 else "0x" + a[2:].upper() for a in addresses]

    def tag(self, params: dict[str, Any], name: str, tag: str) -> None:
        """An empty tag (any) sent as empty or left out, at random."""
        if tag or self.rng.random() < 0.5:
            params[name] = tag


@pytest.fixture
async def served(migrated_url: str, pool: Pool, make_app: MakeApp) -> AsyncIterator[str]:
    """The application on the test's database, over HTTP on 127.0.0.1: its /api/v1 URL."""
    async with serve_asgi(make_app(api_settings(migrated_url), pool), lifespan="off") as url:
        yield f"{url}/api/v1"


async def test_the_api_answers_as_the_registries_view_functions(
    devnet: Devnet, migrated_url: str, served: str
) -> None:
    seed = run_seed()
    print(f"seed {seed}: {SEED_VARIABLE}={seed} repeats this run")
    rng = random.Random(seed)
    chain = await setup_chain(devnet, rng)
    chain.mine_together = rng
    validators = [random_address(rng) for _ in range(5)] + [chain.owners[1]]
    for validator in validators:
        await chain.impersonate(validator)
    config = devnet.chain_config(confirmations=0, max_block_range=rng.choice([2, 7, 1000]))
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        indexer = ChainIndexer(config, conn, devnet.rpc)
        await indexer.prepare()
        await drive_activity(chain, rng, validators, indexer)
        await indexer.close()

    # Addresses to ask about: clients, owners, newcomers, validators, and two strangers.
    strangers = [random_address(rng) for _ in range(2)]
    everyone = list(dict.fromkeys([*chain.clients, *chain.owners, *chain.newcomers,
                                   *validators, *strangers]))  # fmt: skip
    async with httpx.AsyncClient(base_url=served, timeout=30) as http:
        account = await make_account(http, "prop_t")
        api = Api(http, account.headers, config.chain_id, rng)
        await check_identities(api, chain)
        await check_whole_feedback(api, chain, strangers)
        await check_summaries(api, chain, everyone)
        await check_feedback_lists(api, chain, everyone)
        await check_validations(api, chain, [*validators, *strangers, ZERO])


async def drive_activity(
    chain: Chain, rng: random.Random, validators: list[str], indexer: ChainIndexer
) -> None:
    """Two phases of everything, the first indexed before the second happens: so that the
    model is updated across batches (revocations, responses, answers and transfers of what
    an earlier batch stored) as well as built within one."""
    start = chain.net.registries.block_number
    await give_feedback(chain, rng, 2, ALL_TAGS1, ALL_TAGS2)
    await change_identities(chain, rng)
    await transfer_agents(chain, rng)
    hashes = await request_validations(chain, rng, validators, 30)
    await answer_validations(chain, rng, hashes[:20], ALL_VALIDATION_TAGS)
    await give_feedback(chain, rng, 1, ALL_TAGS1, ALL_TAGS2)  # to the new agents too
    await indexer.sync_to_head()

    records = feedback_records(await registry_logs(chain.net, start))
    await revoke_and_respond(chain, records, rng)
    await give_feedback(chain, rng, 1, ALL_TAGS1, ALL_TAGS2)
    await transfer_agents(chain, rng)
    await change_identities(chain, rng)
    hashes += await request_validations(chain, rng, validators, 15)
    await answer_validations(chain, rng, hashes, ALL_VALIDATION_TAGS)  # some a second time
    await overflow_the_summary(chain)
    await indexer.sync_to_head()


async def check_identities(api: Api, chain: Chain) -> None:
    """Each agent's profile: the owner, wallet, URI and metadata the identity registry has;
    /agents by owner and by wallet: the agents the registry gives them."""
    agents = [(agent_id,) for agent_id in chain.agents]
    owners = [o.lower() for (o,) in await chain.views(IDENTITY, [("ownerOf", a) for a in agents])]
    wallets = [w.lower() for (w,) in await chain.views(IDENTITY, [("getAgentWallet", a)
                                                                  for a in agents])]  # fmt: skip
    uris = [u for (u,) in await chain.views(IDENTITY, [("tokenURI", a) for a in agents])]
    keyed = [(agent_id, key) for agent_id in chain.agents
             for key in ["agentWallet", *sorted(chain.metadata_keys.get(agent_id, ()))]]  # fmt: skip
    values = dict(zip(keyed, await chain.views(IDENTITY, [("getMetadata", k) for k in keyed]),
                      strict=True))  # fmt: skip
    for agent_id, owner, wallet, uri in zip(chain.agents, owners, wallets, uris, strict=True):
        profile = await api.get(api.agent(agent_id), {})
        assert profile["owner"] == owner, agent_id
        assert profile["agent_wallet"] == (None if wallet == ZERO else wallet), agent_id
        (wallet_bytes,) = values[(agent_id, "agentWallet")]
        assert "0x" + wallet_bytes.hex() == (profile["agent_wallet"] or "0x"), agent_id
        assert profile["agent_uri"] == uri, agent_id
        assert profile["metadata"] == {
            key: "0x" + value.hex()
            for (a, key), (value,) in values.items()
            if a == agent_id and key != "agentWallet"
        }, agent_id
    # Agents changed hands, and some have a wallet, others none.
    assert owners[:6] != [chain.owners[agent_id // 2] for agent_id in range(6)]
    assert ZERO in wallets
    assert len(set(wallets)) >= 2

    balances = await chain.views(IDENTITY, [("balanceOf", (o,)) for o in sorted(set(owners))])
    for owner, (balance,) in zip(sorted(set(owners)), balances, strict=True):
        (spelled,) = api.spelled([owner])
        found, _ = await api.every_page(
            "/agents", {"chain_id": api.chain_id, "owner": spelled}, AGENT_PAGE_SIZES
        )
        assert sorted(int(item["agent_id"]) for item in found) == [
            a for a, o in zip(chain.agents, owners, strict=True) if o == owner
        ], owner
        assert len(found) == balance
    for wallet in sorted(set(wallets) - {ZERO}):  # (a set's order would change the dice)
        (spelled,) = api.spelled([wallet])
        found, _ = await api.every_page(
            "/agents", {"chain_id": api.chain_id, "wallet": spelled}, AGENT_PAGE_SIZES
        )
        assert sorted(int(item["agent_id"]) for item in found) == [
            a for a, w in zip(chain.agents, wallets, strict=True) if w == wallet
        ], wallet


def exact(value: int, decimals: int) -> Decimal:
    """value / 10^decimals, every digit kept (Decimal arithmetic rounds to 28 digits)."""
    return Decimal(f"{value}E-{decimals}")


def feedback_columns(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The API's feedback as readAllFeedback's rows, numbers as exact text."""
    for item in items:  # the score is value / 10^decimals, exactly, without an exponent
        assert Decimal(item["score"]) == exact(int(item["value"]), item["value_decimals"])
        assert "E" not in item["score"].upper()
    return [(item["client_address"], item["feedback_index"], item["value"],
             item["value_decimals"], item["tag1"], item["tag2"], item["revoked"])
            for item in items]  # fmt: skip


def contract_columns(answer: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """readAllFeedback's parallel arrays as rows, numbers as exact text."""
    clients, indexes, values, decimals, tags1, tags2, revoked = answer
    return [(c.lower(), str(i), str(v), d, t1, t2, r)
            for c, i, v, d, t1, t2, r in zip(clients, indexes, values, decimals, tags1, tags2,
                                             revoked, strict=True)]  # fmt: skip


async def check_whole_feedback(api: Api, chain: Chain, strangers: list[str]) -> None:
    """Each agent's whole /feedback (revoked included): readAllFeedback's rows, its clients in
    getClients' order, each one's indexes 1 to getLastIndex; each feedback's responses as
    getResponseCount counts them (in all, and by responder), summed per client and per agent
    too; the profile's counts."""
    whole = await chain.views(REPUTATION, [("readAllFeedback", (a, [], "", "", True))
                                           for a in chain.agents])  # fmt: skip
    clients = await chain.views(REPUTATION, [("getClients", (a,)) for a in chain.agents])
    requests = await chain.views(VALIDATION, [("getAgentValidations", (a,))
                                              for a in chain.agents])  # fmt: skip
    responded = 0
    for agent_id, answer, (order,), (hashes,) in zip(chain.agents, whole, clients, requests,
                                                     strict=True):  # fmt: skip
        items, _ = await api.every_page(api.agent(agent_id, "/feedback"),
                                        {"include_revoked": "true"})  # fmt: skip
        assert feedback_columns(items) == contract_columns(answer), agent_id
        order = [c.lower() for c in order]
        assert list(dict.fromkeys(item["client_address"] for item in items)) == order, agent_id

        asked = [*order, *strangers]
        last = await chain.views(REPUTATION, [("getLastIndex", (agent_id, c)) for c in asked])
        for client, (last_index,) in zip(asked, last, strict=True):
            indexes = [int(i["feedback_index"]) for i in items if i["client_address"] == client]
            assert indexes == list(range(1, last_index + 1)), (agent_id, client)

        await check_response_counts(chain, agent_id, items, order)
        responded += sum(item["response_count"] > 0 for item in items)

        stats = (await api.get(api.agent(agent_id), {}))["stats"]
        assert stats == {
            "feedback_count": sum(not item["revoked"] for item in items),
            "revoked_count": sum(item["revoked"] for item in items),
            "client_count": len(order),
            "validation_count": len(hashes),
        }, agent_id
    assert responded > 10


async def check_response_counts(
    chain: Chain, agent_id: int, items: list[dict[str, Any]], order: list[str]
) -> None:
    """Each feedback's response_count equals getResponseCount of it, and its listed responses
    (all of them, up to RESPONSES_PER_FEEDBACK) counted by responder equal getResponseCount
    from that responder; their sums per client and over the agent equal it too. The contract
    reads client zero as "every client", so the zero address's own feedback is checked
    against the responses that were sent instead."""
    questions: list[tuple[int, str, int, list[str]]] = [(agent_id, ZERO, 0, [])]
    questions += [(agent_id, client, 0, []) for client in order if client != ZERO]
    for item in items:
        client, index = item["client_address"], int(item["feedback_index"])
        if client == ZERO:
            sent = sum(n for (a, c, i, _), n in chain.responses.items()
                       if (a, c, i) == (agent_id, ZERO, index))  # fmt: skip
            assert item["response_count"] == sent, (agent_id, client, index)
            continue
        questions.append((agent_id, client, index, []))
        if item["response_count"] <= RESPONSES_PER_FEEDBACK:  # all of them are listed
            for responder in sorted(
                {r["responder"] for r in item["responses"]} | {ZERO, chain.owners[0]}
            ):
                questions.append((agent_id, client, index, [responder]))
    answers = [n for (n,) in await chain.views(REPUTATION, [("getResponseCount", q)
                                                            for q in questions])]  # fmt: skip
    by_question = dict(zip(((c, i, tuple(r)) for _, c, i, r in questions), answers, strict=True))
    assert sum(item["response_count"] for item in items) == by_question[(ZERO, 0, ())]
    per_client: Counter[str] = Counter()
    for item in items:
        client, index = item["client_address"], int(item["feedback_index"])
        per_client[client] += item["response_count"]
        if client == ZERO:
            continue
        assert item["response_count"] == by_question[(client, index, ())], (agent_id, item)
        shown = min(item["response_count"], RESPONSES_PER_FEEDBACK)
        assert len(item["responses"]) == shown, (agent_id, item)
        if item["response_count"] > shown:
            continue
        listed = Counter(r["responder"] for r in item["responses"])
        for (c, i, responders), count in by_question.items():
            if (c, i) == (client, index) and responders:
                assert listed[responders[0]] == count, (agent_id, client, index, responders)
    for client in order:
        if client != ZERO:
            assert per_client[client] == by_question[(client, 0, ())], (agent_id, client)


async def check_summaries(api: Api, chain: Chain, everyone: list[str]) -> None:
    """/reputation's spec summary equals getSummary for random agents, client lists (short
    ones with repeats, strangers and the zero address; or everyone, so that counts are large
    and decimals mixed) and tags."""
    rng = api.rng
    asked = []
    for _ in range(SUMMARY_QUERIES):
        agent_id = rng.choice(chain.agents)
        if rng.random() < 0.2:
            clients = rng.sample(everyone, len(everyone)) + rng.choices(everyone, k=3)
        else:
            clients = rng.choices(everyone, k=rng.randint(1, 6))
        tag1 = rng.choice([*ALL_TAGS1, "absent"]) if rng.random() < 0.5 else ""
        tag2 = rng.choice([*ALL_TAGS2, "absent"]) if rng.random() < 0.3 else ""
        asked.append((agent_id, clients, tag1, tag2))
    asked.append((0, [chain.clients[0]], "overflow", ""))
    answers = await chain.views(REPUTATION, [("getSummary", a) for a in asked])
    counted = 0
    for (agent_id, clients, tag1, tag2), (count, value, decimals) in zip(asked, answers,
                                                                         strict=True):  # fmt: skip
        params: dict[str, Any] = {"clients": api.spelled(clients)}
        api.tag(params, "tag1", tag1)
        api.tag(params, "tag2", tag2)
        spec = (await api.get(api.agent(agent_id, "/reputation"), params))["spec"]
        assert (spec["count"], spec["value"], spec["decimals"]) == (
            count, str(value), decimals), (agent_id, clients, tag1, tag2)  # fmt: skip
        assert (spec["clients"], spec["tag1"], spec["tag2"]) == (clients, tag1, tag2)
        assert Decimal(spec["value_decimal"]) == exact(value, decimals)
        assert "E" not in spec["value_decimal"].upper()
        counted += count > 0
    assert counted > SUMMARY_QUERIES // 5
    # INT128_MAX / 3 in 18 decimals does not fit in int128: both keep its low 128 bits.
    assert answers[-1] == (3, (INT128_MAX * 10**18 // 3 + 2**127) % 2**128 - 2**127, 18)


async def check_feedback_lists(api: Api, chain: Chain, everyone: list[str]) -> None:
    """/feedback, every page, equals readAllFeedback for random agents, client lists (none,
    or with repeats, strangers and the zero address), tags and include_revoked."""
    rng = api.rng
    asked = []
    for _ in range(FEEDBACK_QUERIES):
        agent_id = rng.choice(chain.agents)
        clients = rng.choices(everyone, k=rng.randint(1, 6)) if rng.random() < 0.6 else []
        tag1 = rng.choice([*ALL_TAGS1, "absent"]) if rng.random() < 0.4 else ""
        tag2 = rng.choice([*ALL_TAGS2, "absent"]) if rng.random() < 0.2 else ""
        asked.append((agent_id, clients, tag1, tag2, rng.random() < 0.5))
    answers = await chain.views(REPUTATION, [("readAllFeedback", a) for a in asked])
    listed = 0
    for (agent_id, clients, tag1, tag2, revoked), answer in zip(asked, answers, strict=True):
        params: dict[str, Any] = {"clients": api.spelled(clients)}
        api.tag(params, "tag1", tag1)
        api.tag(params, "tag2", tag2)
        if revoked or rng.random() < 0.5:
            params["include_revoked"] = "true" if revoked else "false"
        items, _ = await api.every_page(api.agent(agent_id, "/feedback"), params)
        assert feedback_columns(items) == contract_columns(answer), (
            agent_id, clients, tag1, tag2, revoked)  # fmt: skip
        listed += len(items)
    assert listed > FEEDBACK_QUERIES


def status_row(request_hash: bytes, status: tuple[Any, ...]) -> dict[str, Any]:
    """A request as getValidationStatus has it; no response yet when lastUpdate is 0."""
    validator, _, response, response_hash, tag, updated = status
    answered = updated > 0
    return {
        "request_hash": "0x" + request_hash.hex(),
        "validator_address": validator.lower(),
        "response": response if answered else None,
        "response_tag": tag if answered else None,
        "response_hash": "0x" + response_hash.hex() if answered else None,
        "responded_at": updated if answered else None,
    }


def item_row(item: dict[str, Any]) -> dict[str, Any]:
    """A request as /validations shows it, its response time in seconds."""
    responded_at = item["responded_at"]
    return {
        **{key: item[key] for key in ("request_hash", "validator_address", "response",
                                      "response_tag", "response_hash")},
        "responded_at": responded_at and int(datetime.fromisoformat(responded_at).timestamp()),
    }  # fmt: skip


async def check_validations(api: Api, chain: Chain, validators: list[str]) -> None:
    """/validations for random agents, validator lists (none, or with repeats, strangers and
    the zero address) and tags: its summary equals ValidationRegistry.getSummary, its items
    (every page) the agent's requests newest first (getAgentValidations) that the filters
    select, each as getValidationStatus has it."""
    rng = api.rng
    requests = await chain.views(VALIDATION, [("getAgentValidations", (a,))
                                              for a in chain.agents])  # fmt: skip
    hashes = [h for (agent_hashes,) in requests for h in agent_hashes]
    statuses = dict(zip(hashes, await chain.views(VALIDATION, [("getValidationStatus", (h,))
                                                               for h in hashes]),
                        strict=True))  # fmt: skip
    asked = []
    for _ in range(VALIDATION_QUERIES):
        agent_id = rng.choice(chain.agents)
        chosen = rng.choices(validators, k=rng.randint(1, 4)) if rng.random() < 0.6 else []
        tag = rng.choice([*ALL_VALIDATION_TAGS, "absent"]) if rng.random() < 0.5 else ""
        asked.append((agent_id, chosen, tag))
    answers = await chain.views(VALIDATION, [("getSummary", a) for a in asked])
    counted = 0
    for (agent_id, chosen, tag), (count, average) in zip(asked, answers, strict=True):
        params: dict[str, Any] = {"validators": api.spelled(chosen)}
        api.tag(params, "tag", tag)
        items, first = await api.every_page(api.agent(agent_id, "/validations"), params)
        assert first["summary"] == {"count": count, "average_response": average}, (
            agent_id, chosen, tag)  # fmt: skip
        counted += count > 0
        (agent_hashes,) = requests[chain.agents.index(agent_id)]
        expected = []
        for request_hash in reversed(agent_hashes):  # newest first
            status = statuses[request_hash]
            validator, _, _, _, response_tag, updated = status
            if chosen and validator.lower() not in chosen:
                continue
            if tag and (not updated or response_tag != tag):
                continue
            expected.append(status_row(request_hash, status))
        assert [item_row(item) for item in items] == expected, (agent_id, chosen, tag)
    assert counted > VALIDATION_QUERIES // 4
