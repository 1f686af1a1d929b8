"""The read model as `agents.read` serves it, after scripted activity on a devnet: owners and
wallets through transfers, unsetAgentWallet and setAgentWallet, registration files, feedback
of every ABI version with revocations and responses, and validations."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from erc8004_backend.agents import read
from erc8004_backend.config import Settings
from erc8004_backend.devnet import Devnet, TxRequest
from erc8004_backend.devnet.contracts import IDENTITY, REPUTATION, load_artifact
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from erc8004_backend.indexer.registration import RegistrationResolver
from tests.support.raw_logs import emit_interim_feedback, emit_raw_log, topic_of
from tests.support.read_model import assert_model_equals_rebuild, assert_model_matches_chain

pytestmark = [pytest.mark.timeout(90), pytest.mark.devnet]

CHAIN = 31337


@dataclass
class Indexed:
    """A devnet, its indexer and a connection to the indexed database."""

    devnet: Devnet
    conn: psycopg.AsyncConnection
    indexer: ChainIndexer

    @property
    def accounts(self) -> list[str]:
        return [a.lower() for a in self.devnet.activity.accounts]

    async def sync(self) -> None:
        await self.indexer.sync_to_head()

    async def send(self, sender: str, contract: str, function: str, *args: Any) -> None:
        address = {IDENTITY: self.devnet.registries.identity,
                   REPUTATION: self.devnet.registries.reputation}[contract]  # fmt: skip
        data = load_artifact(contract).encode_call(function, *args)
        await self.devnet.activity.transactor.send(
            TxRequest(sender, address, data, 1_000_000, function)
        )


@pytest.fixture
async def indexed(devnet: Devnet, migrated_url: str) -> AsyncIterator[Indexed]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        indexer = ChainIndexer(devnet.chain_config(confirmations=0), conn, devnet.rpc)
        await indexer.prepare()
        yield Indexed(devnet, conn, indexer)
        await indexer.close()
        # Whatever a test did, the model it leaves is the one a rebuild makes.
        await assert_model_equals_rebuild(conn, CHAIN)


def data_uri(document: dict[str, Any]) -> str:
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return f"data:application/json;base64,{encoded}"


async def test_a_profile_has_owner_wallet_uri_registration_file_and_metadata(
    indexed: Indexed,
) -> None:
    alice, bob = indexed.accounts[:2]
    document = {
        "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
        "name": "Scout",
        "description": "finds things",
        "image": "https://example.com/scout.png",
        "services": [
            {"name": "web", "endpoint": "https://scout.example.com/"},
            {"name": "MCP", "endpoint": "https://scout.example.com/mcp", "version": "2025-06-18"},
            {"name": "A2A", "endpoint": "https://scout.example.com/card.json"},
        ],
        "x402Support": True,
        "active": False,
        "supportedTrust": ["reputation", 7, "tee-attestation"],
    }
    agent_id = (
        await indexed.devnet.activity.register_agent(data_uri(document), owner=alice)
    ).agent_id
    await indexed.send(alice, IDENTITY, "setMetadata", agent_id, "category", b"search")
    await indexed.send(alice, IDENTITY, "setMetadata", agent_id, "category", b"finding")
    await indexed.send(alice, IDENTITY, "setMetadata", agent_id, "empty", b"")
    assert agent_id == 0  # ids start at 0, and agent 0 is an agent like any other
    await indexed.sync()

    profile = await read.get_agent(indexed.conn, CHAIN, agent_id)
    assert profile is not None
    assert (profile.owner, profile.agent_wallet) == (alice, alice)
    assert profile.agent_uri == data_uri(document)
    assert profile.registration == read.RegistrationFile(status="pending")  # not read yet
    assert profile.metadata == {"category": b"finding", "empty": b""}
    assert profile.registered_block == profile.first_block < profile.last_block

    resolver = RegistrationResolver(indexed.conn, settings=Settings())
    assert await resolver.run_once() == 1
    await resolver.aclose()
    registration = (await read.get_agent(indexed.conn, CHAIN, agent_id)).registration  # type: ignore[union-attr]
    assert registration.status == "fetched"
    assert (registration.name, registration.description, registration.image) == (
        "Scout", "finds things", "https://example.com/scout.png",
    )  # fmt: skip
    assert registration.mcp_endpoint == "https://scout.example.com/mcp"
    assert registration.a2a_endpoint == "https://scout.example.com/card.json"
    assert registration.web_endpoint == "https://scout.example.com/"
    assert [s["name"] for s in registration.services] == ["web", "MCP", "A2A"]
    assert (registration.active, registration.x402_support) == (False, True)
    assert registration.supported_trust == ["reputation", "tee-attestation"]

    # A new URI: the profile follows it, and its file is not read yet.
    await indexed.send(alice, IDENTITY, "setAgentURI", agent_id, "https://scout.example/v2.json")
    await indexed.sync()
    profile = await read.get_agent(indexed.conn, CHAIN, agent_id)
    assert profile is not None
    assert profile.agent_uri == "https://scout.example/v2.json"
    assert profile.registration.status == "pending"
    assert profile.registration.name is None
    assert await read.get_agent(indexed.conn, CHAIN, agent_id + 1) is None
    assert bob not in (profile.owner, profile.agent_wallet)


async def test_a_transfer_changes_the_owner_and_clears_the_wallet(indexed: Indexed) -> None:
    alice, bob = indexed.accounts[:2]
    agent_id = (
        await indexed.devnet.activity.register_agent("https://a.example/1.json", owner=alice)
    ).agent_id
    await indexed.sync()
    before = await read.get_agent(indexed.conn, CHAIN, agent_id)
    assert before is not None
    assert (before.owner, before.agent_wallet) == (alice, alice)

    await indexed.send(alice, IDENTITY, "transferFrom", alice, bob, agent_id)
    await indexed.sync()
    after = await read.get_agent(indexed.conn, CHAIN, agent_id)
    assert after is not None
    assert (after.owner, after.agent_wallet) == (bob, None)
    assert after.wallet_updated_at is not None
    assert after.last_block > before.last_block
    await assert_model_matches_chain(indexed.conn, indexed.devnet)


async def test_unset_and_set_agent_wallet(indexed: Indexed) -> None:
    alice, bob = indexed.accounts[:2]
    agent_id = (
        await indexed.devnet.activity.register_agent("https://a.example/2.json", owner=alice)
    ).agent_id
    await indexed.send(alice, IDENTITY, "unsetAgentWallet", agent_id)
    await indexed.sync()
    profile = await read.get_agent(indexed.conn, CHAIN, agent_id)
    assert profile is not None
    assert (profile.owner, profile.agent_wallet) == (alice, None)
    await assert_model_matches_chain(indexed.conn, indexed.devnet)

    # setAgentWallet (which the deployed registry has, and the devnet's has not) emits
    # MetadataSet(agentWallet) with the 20 bytes of the new wallet.
    await emit_raw_log(
        indexed.devnet,
        indexed.devnet.registries.identity,
        [topic_of("MetadataSet(uint256,string,string,bytes)"), f"0x{agent_id:064x}",
         "0x" + keccak(b"agentWallet").hex()],
        abi_encode(["string", "bytes"], ["agentWallet", bytes.fromhex(bob[2:])]),
    )  # fmt: skip
    await indexed.sync()
    profile = await read.get_agent(indexed.conn, CHAIN, agent_id)
    assert profile is not None
    assert (profile.owner, profile.agent_wallet) == (alice, bob)
    assert "agentWallet" not in profile.metadata  # the reserved key is the wallet, not metadata


async def test_feedback_values_revocations_responses_and_the_spec_reads(
    indexed: Indexed,
) -> None:
    owner, first, second, third, responder = indexed.accounts[:5]
    activity = indexed.devnet.activity
    agent_id = (await activity.register_agent("https://a.example/3.json", owner=owner)).agent_id
    # `second` gives feedback first, so it is the agent's first client.
    await activity.give_feedback(agent_id, -(2**127), decimals=18, tag1="yield", tag2="day",
                                 client=second)  # fmt: skip
    await activity.give_feedback(agent_id, 87, tag1="starred", endpoint="https://e.example",
                                 file_uri="ipfs://bafkreifeedback", file_hash=b"\x11" * 32,
                                 client=first)  # fmt: skip
    await activity.give_feedback(agent_id, 9977, decimals=2, tag1="uptime", client=first)
    await activity.give_feedback(agent_id, 2**127 - 1, tag1="starred", client=second)
    await activity.give_feedback(agent_id, 5, client=third)
    await indexed.send(first, REPUTATION, "revokeFeedback", agent_id, 1)
    for _ in range(2):
        await indexed.send(responder, REPUTATION, "appendResponse", agent_id, first, 2,
                           "ipfs://bafkreiresponse", b"\x22" * 32)  # fmt: skip
    await indexed.send(owner, REPUTATION, "appendResponse", agent_id, second, 1, "ipfs://r2",
                       b"\x00" * 32)  # fmt: skip
    await indexed.sync()
    conn = indexed.conn

    assert await read.get_clients(conn, CHAIN, agent_id) == [second, first, third]
    assert await read.get_last_index(conn, CHAIN, agent_id, first.upper().replace("0X", "0x")) == 2
    assert await read.get_last_index(conn, CHAIN, agent_id, responder) == 0

    revoked = await read.read_feedback(conn, CHAIN, agent_id, first, 1)
    assert revoked is not None
    assert (revoked.value, revoked.value_decimals, revoked.tag1, revoked.tag2) == (
        87,
        0,
        "starred",
        "",
    )
    assert (revoked.endpoint, revoked.feedback_uri) == (
        "https://e.example",
        "ipfs://bafkreifeedback",
    )
    assert revoked.feedback_hash == "0x" + "11" * 32
    assert revoked.revoked
    assert revoked.revoked_at is not None
    assert revoked.abi_version == "v1"
    extreme = await read.read_feedback(conn, CHAIN, agent_id, second, 1)
    assert extreme is not None
    assert (extreme.value, extreme.value_decimals, extreme.response_count) == (-(2**127), 18, 1)
    assert await read.read_feedback(conn, CHAIN, agent_id, first, 3) is None

    def keys(items: list[read.Feedback]) -> list[tuple[str, int]]:
        return [(f.client_address, f.feedback_index) for f in items]

    everything = await read.read_all_feedback(conn, CHAIN, agent_id, include_revoked=True)
    assert keys(everything) == [(second, 1), (second, 2), (first, 1), (first, 2), (third, 1)]
    assert keys(await read.read_all_feedback(conn, CHAIN, agent_id)) == [
        (second, 1), (second, 2), (first, 2), (third, 1),
    ]  # fmt: skip
    # Clients in the order given, as often as given; tags filter exactly, "" is any.
    chosen = await read.read_all_feedback(conn, CHAIN, agent_id, clients=[third, second, third])
    assert keys(chosen) == [(third, 1), (second, 1), (second, 2), (third, 1)]
    starred = await read.read_all_feedback(conn, CHAIN, agent_id, tag1="starred", tag2="",
                                           include_revoked=True)  # fmt: skip
    assert keys(starred) == [(second, 2), (first, 1)]
    assert (
        keys(await read.read_all_feedback(conn, CHAIN, agent_id, tag1="yield", tag2="week")) == []
    )
    assert len(await read.read_all_feedback(conn, CHAIN, agent_id, limit=2)) == 2

    responses = await read.get_responses(conn, CHAIN, agent_id, first, 2)
    assert [(r.responder, r.response_uri) for r in responses] == [
        (responder, "ipfs://bafkreiresponse")
    ] * 2
    assert responses[0].response_hash == "0x" + "22" * 32
    assert (await read.read_feedback(conn, CHAIN, agent_id, first, 2)).response_count == 2  # type: ignore[union-attr]
    count = read.get_response_count
    assert await count(conn, CHAIN, agent_id) == 3
    assert await count(conn, CHAIN, agent_id, client=first) == 2
    assert await count(conn, CHAIN, agent_id, client=first, feedback_index=0) == 2
    assert await count(conn, CHAIN, agent_id, client=first, feedback_index=1) == 0
    assert await count(conn, CHAIN, agent_id, responders=[owner]) == 1
    assert await count(conn, CHAIN, agent_id, client=second, responders=[responder]) == 0
    # As the contract counts: the zero address is every client, whatever the index, and a
    # responder listed twice counts twice.
    zero = "0x" + "00" * 20
    assert await count(conn, CHAIN, agent_id, client=zero, feedback_index=1) == 3
    assert await count(conn, CHAIN, agent_id, responders=[owner, owner]) == 2
    assert await count(conn, CHAIN, agent_id, responders=[owner, zero, owner]) == 2
    await assert_model_matches_chain(conn, indexed.devnet)


async def test_feedback_of_the_earlier_abis_is_numbered_as_their_contracts_did(
    indexed: Indexed,
) -> None:
    owner, client = indexed.accounts[:2]
    activity = indexed.devnet.activity
    agent_id = (await activity.register_agent("https://a.example/4.json", owner=owner)).agent_id
    # The October 2025 draft's event has no index: its contract counted 1, 2, ...
    await activity.give_legacy_feedback(agent_id, score=40, tag1=b"starred", sender=client)
    await activity.give_legacy_feedback(agent_id, score=60, tag1=b"", sender=client)
    await indexed.sync()  # the count goes on across batches
    await activity.give_legacy_feedback(agent_id, score=80, sender=client)
    # The interim ABI names its index; tag1 is indexed, so only its hash is known.
    await emit_interim_feedback(indexed.devnet, agent_id=agent_id, client=client,
                                feedback_index=7, score=90, tag1="refund", tag2="week",
                                endpoint="", feedback_uri="")  # fmt: skip
    await activity.give_legacy_feedback(agent_id, score=10, sender=client)
    # A revocation names the index the contract counted (the devnet's legacy feedback is an
    # event only, so the log is made by hand).
    await emit_raw_log(
        indexed.devnet,
        indexed.devnet.registries.reputation,
        [topic_of("FeedbackRevoked(uint256,address,uint64)"), f"0x{agent_id:064x}",
         "0x" + client[2:].rjust(64, "0"), f"0x{2:064x}"],
    )  # fmt: skip
    await indexed.sync()

    feedback = await read.read_all_feedback(indexed.conn, CHAIN, agent_id, include_revoked=True)
    assert [(f.feedback_index, f.value, f.value_decimals, f.tag1, f.abi_version, f.revoked)
            for f in feedback] == [
        (1, 40, 0, "starred", "v0", False),
        (2, 60, 0, "", "v0", True),
        (3, 80, 0, "starred", "v0", False),
        (7, 90, 0, None, "interim", False),
        (8, 10, 0, "starred", "v0", False),
    ]  # fmt: skip
    assert await read.get_last_index(indexed.conn, CHAIN, agent_id, client) == 8
    assert await read.get_clients(indexed.conn, CHAIN, agent_id) == [client]


async def test_validations_keep_the_latest_response_and_count_them(indexed: Indexed) -> None:
    owner, validator, other = indexed.accounts[:3]
    activity = indexed.devnet.activity
    agent_id = (await activity.register_agent("https://a.example/5.json", owner=owner)).agent_id
    answered = (
        await activity.request_validation(agent_id, validator, request_uri="ipfs://req1")
    ).request_hash
    await activity.respond_validation(answered, 30, tag="soft-finality")
    await indexed.sync()
    await activity.respond_validation(answered, 100, response_uri="ipfs://proof",
                                      response_hash=b"\x33" * 32, tag="hard-finality")  # fmt: skip
    waiting = (
        await activity.request_validation(agent_id, other, request_uri="ipfs://req2")
    ).request_hash
    await indexed.sync()

    validations = await read.get_validations(indexed.conn, CHAIN, agent_id)
    assert [v.request_hash for v in validations] == ["0x" + waiting.hex(), "0x" + answered.hex()]
    latest, first = validations[1], validations[0]
    assert (latest.validator_address, latest.agent_id, latest.request_uri) == (
        validator, agent_id, "ipfs://req1",
    )  # fmt: skip
    assert (latest.response, latest.response_tag, latest.response_uri) == (
        100, "hard-finality", "ipfs://proof",
    )  # fmt: skip
    assert latest.response_hash == "0x" + "33" * 32
    assert latest.response_count == 2
    assert latest.responded_at is not None
    assert (first.response, first.response_count, first.responded_at) == (None, 0, None)
    upper = "0x" + other[2:].upper()  # addresses in any case
    mine = await read.get_validations(indexed.conn, CHAIN, agent_id, validators=[upper])
    assert [v.request_hash for v in mine] == ["0x" + waiting.hex()]
    assert len(await read.get_validations(indexed.conn, CHAIN, agent_id, limit=1)) == 1
    await assert_model_matches_chain(indexed.conn, indexed.devnet)
