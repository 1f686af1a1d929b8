"""Agents' MCP tokens through the real application: set / rotate / delete with the owner's
EIP-191 signature of a single-use challenge, or as an operator, stored so that the `mcp`
action reads them, never shown."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_checksum_address
from psycopg.types.json import Jsonb
from structlog.testing import capture_logs

from erc8004_backend.actions.delivery import DeliveryFailed
from erc8004_backend.actions.mcp import load_mcp_target
from erc8004_backend.chain.signatures import personal_sign
from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS
from erc8004_backend.encryption import Sealed, SecretBox, agent_token_context
from tests.api.conftest import Account, ApiClient, api_client

CHAIN = 31337
AGENT = 7
TOKEN = "mcp-token-of-agent-7-0123456789"
# Anvil's first three development keys.
OWNER = PrivateKey(
    bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5c6df4c8bc7d1f2ad0ce")
)
NEW_OWNER = PrivateKey(
    bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
)
STRANGER = PrivateKey(
    bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
)
BOX = SecretBox.from_spec(DEVELOPMENT_TOKEN_KEYS)  # the key the test application uses


def address(key: PrivateKey) -> str:
    return key.public_key.to_address()


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_path(agent_id: int | str = AGENT, chain_id: int | str = CHAIN) -> str:
    return f"/agents/{chain_id}/{agent_id}/mcp-token"


def challenge_path(agent_id: int | str = AGENT, chain_id: int | str = CHAIN) -> str:
    return token_path(agent_id, chain_id) + "/challenge"


async def challenge(
    api: ApiClient, account: Account, action: str = "set", *, token: str = TOKEN,
    agent_id: int = AGENT, chain_id: int = CHAIN,
) -> dict[str, Any]:  # fmt: skip
    """A challenge `account` asks for: its nonce, the message to sign, who signs it."""
    body = {"action": action, **({"token_sha256": sha256(token)} if action == "set" else {})}
    response = await api.post(
        challenge_path(agent_id, chain_id), json=body, headers=account.headers
    )
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def signed_set(
    api: ApiClient, account: Account, key: PrivateKey, token: str = TOKEN, *,
    agent_id: int = AGENT, signed_token: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The body of a PUT by `account`, its challenge signed by `key` (a challenge for
    `signed_token` when given, to swap tokens)."""
    asked = await challenge(api, account, token=signed_token or token, agent_id=agent_id)
    return {"token": token, "signature": personal_sign(key, asked["message"]),
            "nonce": asked["nonce"]}  # fmt: skip


async def signed_delete(
    api: ApiClient, account: Account, key: PrivateKey, *, agent_id: int = AGENT
) -> dict[str, str]:
    asked = await challenge(api, account, "delete", agent_id=agent_id)
    return {"signature": personal_sign(key, asked["message"]), "nonce": asked["nonce"]}


async def expire(conn: psycopg.AsyncConnection, nonce: str) -> None:
    await conn.execute(
        "UPDATE mcp_token_challenges SET expires_at = now() - interval '1 second' WHERE nonce = %s",
        [nonce],
    )


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        yield connection


class Identity:
    """Identity-registry events of one chain, stored as the indexer stores them."""

    def __init__(self, conn: psycopg.AsyncConnection, chain_id: int = CHAIN) -> None:
        self.conn, self.chain_id, self.block = conn, chain_id, 0

    async def emit(
        self, event_type: str, agent_id: int, *, log_index: int = 0, same_block: bool = False,
        registry: str = "identity", **fields: Any,
    ) -> None:  # fmt: skip
        if not same_block:
            self.block += 1
        columns = ["chain_id", "registry", "event_type", "contract_address", "block_number",
                   "block_hash", "block_time", "transaction_hash", "transaction_index",
                   "log_index", "agent_id", *fields]  # fmt: skip
        block_hash = f"0x{self.chain_id:08x}{self.block:056x}"
        values = [self.chain_id, registry, event_type, "0x8004a818bfb912233c491871b3d84c89a494bd9e",
                  self.block, block_hash, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=self.block),
                  block_hash, 0, log_index, agent_id, *fields.values()]  # fmt: skip
        await self.conn.execute(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))})",
            values,
        )

    async def register(self, agent_id: int, owner: str, **fields: Any) -> None:
        """Transfer (the mint) then Registered, as `register(agentURI)` emits them."""
        zero = "0x" + "0" * 40
        await self.emit("Transfer", agent_id, from_address=zero, to_address=owner, owner=owner)
        await self.emit(
            "Registered", agent_id, log_index=2, same_block=True, owner=owner,
            token_uri=f"https://agent.example/{agent_id}.json", **fields,
        )  # fmt: skip

    async def transfer(self, agent_id: int, old: str, new: str, *, same_block: bool = False,
                       log_index: int = 0) -> None:  # fmt: skip
        await self.emit("Transfer", agent_id, from_address=old, to_address=new, owner=new,
                        same_block=same_block, log_index=log_index)  # fmt: skip


@pytest.fixture
async def chain(conn: psycopg.AsyncConnection) -> Identity:
    identity = Identity(conn)
    await identity.register(AGENT, address(OWNER))
    return identity


async def stored(conn: psycopg.AsyncConnection, agent_id: int = AGENT) -> tuple[Any, ...] | None:
    cursor = await conn.execute(
        "SELECT token_ciphertext, key_id, created_by::text FROM agent_mcp_tokens"
        " WHERE chain_id = %s AND agent_id = %s",
        [CHAIN, agent_id],
    )
    return await cursor.fetchone()


async def make_operator(conn: psycopg.AsyncConnection, account: Account) -> None:
    await conn.execute("UPDATE users SET role = 'operator' WHERE id = %s", [account.id])


async def fetched_registration(conn: psycopg.AsyncConnection, agent_id: int = AGENT) -> None:
    """The agent's registration file as the resolver leaves it: fetched, with an MCP service."""
    uri = f"https://agent.example/{agent_id}.json"
    services = [{"name": "MCP", "endpoint": "https://agent.example/mcp"}]
    await conn.execute(
        "INSERT INTO agent_registrations (chain_id, agent_id, uri_digest, agent_uri, status,"
        " document, services, mcp_endpoint, fetched_at)"
        " VALUES (%s, %s, %s, %s, 'fetched', %s, %s, %s, now())",
        [CHAIN, agent_id, hashlib.sha256(uri.encode()).hexdigest(), uri,
         Jsonb({"services": services}), Jsonb(services), "https://agent.example/mcp"],
    )  # fmt: skip


def error(response: httpx.Response) -> str:
    message: str = response.json()["error"]["message"]
    return message


# -- setting it ---------------------------------------------------------------------------


async def test_the_owner_sets_the_token_and_the_mcp_action_reads_it(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    response = await api.put(
        token_path(), json=await signed_set(api, alice, OWNER), headers=alice.headers
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"chain_id", "agent_id", "updated_at", "created"}
    assert (body["chain_id"], body["agent_id"], body["created"]) == (CHAIN, str(AGENT), True)
    assert TOKEN not in response.text
    row = await stored(conn)
    assert row is not None
    ciphertext, key_id, created_by = row
    assert created_by == alice.id
    assert TOKEN.encode() not in bytes(ciphertext)
    assert BOX.open(Sealed(bytes(ciphertext), key_id), agent_token_context(CHAIN, AGENT)) == TOKEN
    await fetched_registration(conn)
    target = await load_mcp_target(
        conn, CHAIN, AGENT, BOX, user_id=alice.id
    )  # the action worker's code path
    assert (target.header_name, target.header_value) == ("Authorization", f"Bearer {TOKEN}")

    rotated = await api.put(
        token_path(),
        json=await signed_set(api, alice, OWNER, "the-next-token"),
        headers=alice.headers,
    )

    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["created"] is False
    assert rotated.json()["updated_at"] > body["updated_at"]
    target = await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=alice.id)
    assert target.header_value == "Bearer the-next-token"


async def test_a_signature_by_another_key_is_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    body = await signed_set(api, alice, STRANGER)
    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 403
    assert error(response) == (
        f"the signature is from {address(STRANGER)}, not the agent's owner {address(OWNER)}:"
        " the owner signs the challenge's message with personal_sign (EIP-191)"
    )
    assert await stored(conn) is None


async def test_a_signature_for_another_token_is_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    # The owner's signature for one token, sent with another token in its place.
    body = await signed_set(api, alice, OWNER, "a-token-of-the-attacker", signed_token=TOKEN)
    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 403
    assert error(response) == (
        f"the challenge {body['nonce']} is for the token with SHA-256 {sha256(TOKEN)}, not this"
        f" one (SHA-256 {sha256('a-token-of-the-attacker')}): ask for a challenge for this token"
    )
    assert await stored(conn) is None


async def test_signatures_for_another_agent_chain_or_action_are_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await chain.register(8, address(OWNER))
    await Identity(conn, chain_id=1).register(AGENT, address(OWNER))
    for_agent_8 = await signed_set(api, alice, OWNER, agent_id=8)
    asked_on_chain_1 = await challenge(api, alice, chain_id=1)
    on_chain_1 = {"token": TOKEN, "nonce": asked_on_chain_1["nonce"],
                  "signature": personal_sign(OWNER, asked_on_chain_1["message"])}  # fmt: skip
    delete = await signed_delete(api, alice, OWNER)

    refused = [
        await api.put(token_path(), json=for_agent_8, headers=alice.headers),
        await api.put(token_path(), json=on_chain_1, headers=alice.headers),
        await api.put(token_path(), json={"token": TOKEN, **delete}, headers=alice.headers),
    ]

    assert [response.status_code for response in refused] == [403, 403, 403]
    assert error(refused[0]) == (
        f"the challenge {for_agent_8['nonce']} was used already, or is not one of yours for"
        f" agent {AGENT} on chain {CHAIN}: a signed challenge authorizes one request, by the"
        " user who asked for it; ask for a new one"
    )
    assert error(refused[2]) == (
        f"the challenge {delete['nonce']} is for the delete action, not set: ask for a"
        " challenge for this one"
    )
    assert await stored(conn) is None


async def test_the_challenge_is_an_eip4361_message_naming_the_deployment(
    api: ApiClient, alice: Account, chain: Identity, migrated_url: str
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    asked = await challenge(api, alice)
    deleting = await challenge(api, alice, "delete")

    issued_at = datetime.fromisoformat(asked["expires_at"]) - timedelta(minutes=5)
    assert before <= issued_at <= datetime.now(UTC)
    owner = to_checksum_address(address(OWNER))
    assert asked["signer"] == owner
    assert asked["message"] == (
        "api.test wants you to sign in with your Ethereum account:\n"
        f"{owner}\n"
        "\n"
        f"Set the MCP token of agent {AGENT} on chain {CHAIN} to the token with SHA-256"
        f" {sha256(TOKEN)}.\n"
        "\n"
        f"URI: http://api.test/api/v1/agents/{CHAIN}/{AGENT}/mcp-token\n"
        "Version: 1\n"
        f"Chain ID: {CHAIN}\n"
        f"Nonce: {asked['nonce']}\n"
        f"Issued At: {issued_at:%Y-%m-%dT%H:%M:%SZ}\n"
        f"Expiration Time: {issued_at + timedelta(minutes=5):%Y-%m-%dT%H:%M:%SZ}"
    )
    assert deleting["message"].splitlines()[3] == (
        f"Delete the MCP token of agent {AGENT} on chain {CHAIN}."
    )
    assert len({asked["nonce"], deleting["nonce"]}) == 2
    # ERC8004_INSTANCE_NAME names the deployment whatever Host the client called.
    async with api_client(migrated_url, instance_name="erc8004.example.org:8443") as named:
        asked = await challenge(named, alice)
    lines = asked["message"].splitlines()
    assert lines[0] == "erc8004.example.org:8443 wants you to sign in with your Ethereum account:"
    assert (
        lines[5] == f"URI: http://erc8004.example.org:8443/api/v1/agents/{CHAIN}/{AGENT}/mcp-token"
    )


async def test_an_expired_challenge_is_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    body = await signed_set(api, alice, OWNER)
    await expire(conn, body["nonce"])

    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 403
    assert error(response).startswith(f"the challenge {body['nonce']} expired at ")
    assert error(response).endswith(": challenges are good for 5 minutes; ask for a new one")
    assert await stored(conn) is None


async def test_a_replayed_signature_is_refused(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    body = await signed_set(api, alice, OWNER)
    replayed_by_bob = await api.put(token_path(), json=body, headers=bob.headers)
    first = await api.put(token_path(), json=body, headers=alice.headers)
    replayed = await api.put(token_path(), json=body, headers=alice.headers)

    # Bob cannot use alice's challenge (and trying does not use it up for her).
    assert [replayed_by_bob.status_code, first.status_code, replayed.status_code] == [
        403, 201, 403,
    ]  # fmt: skip
    assert "was used already, or is not one of yours" in error(replayed)
    assert error(replayed) == error(replayed_by_bob)
    row = await stored(conn)
    assert row is not None
    assert row[2] == alice.id


async def test_two_requests_with_one_challenge_make_one_change(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    body = await signed_set(api, alice, OWNER)

    answers = await asyncio.gather(
        *(api.put(token_path(), json=body, headers=alice.headers) for _ in range(4))
    )

    assert sorted(answer.status_code for answer in answers) == [201, 403, 403, 403]


async def test_a_challenge_before_a_transfer_is_refused_after_it(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    asked = await challenge(api, alice)  # names OWNER
    await chain.transfer(AGENT, address(OWNER), address(NEW_OWNER))
    body = {"token": TOKEN, "nonce": asked["nonce"],
            "signature": personal_sign(NEW_OWNER, asked["message"])}  # fmt: skip

    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 403
    assert error(response) == (
        f"agent {AGENT} on chain {CHAIN} changed owners since the challenge (now"
        f" {address(NEW_OWNER)}): ask for a new one"
    )


async def test_bad_challenge_requests_name_the_field(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "set"}, "token_sha256"),
        ({"action": "set", "token_sha256": sha256(TOKEN).upper()}, "token_sha256"),
        ({"action": "set", "token_sha256": TOKEN}, "token_sha256"),
        ({"action": "delete", "token_sha256": sha256(TOKEN)}, "token_sha256"),
        ({"action": "rotate"}, "action"),
        ({}, "action"),
        ({"action": "delete", "issued_at": "2026-01-01T00:00:00Z"}, "issued_at"),
    ]
    for body, field in cases:
        response = await api.post(challenge_path(), json=body, headers=alice.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field, body
    unknown = await api.post(challenge_path(99), json={"action": "delete"}, headers=alice.headers)
    assert unknown.status_code == 404
    count = await (await conn.execute("SELECT count(*) FROM mcp_token_challenges")).fetchone()
    assert count == (0,)


async def test_without_a_signature_only_operators_may(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await make_operator(conn, bob)

    refused = await api.put(token_path(), json={"token": TOKEN}, headers=alice.headers)
    allowed = await api.put(token_path(), json={"token": TOKEN}, headers=bob.headers)

    assert refused.status_code == 403
    assert error(refused) == (
        f"to set the MCP token of agent {AGENT} on chain {CHAIN}, a signature from its owner"
        f" {address(OWNER)} is required (operators need none): ask POST"
        f" /api/v1/agents/{CHAIN}/{AGENT}/mcp-token/challenge for the text to sign, have the"
        " owner sign it with personal_sign (EIP-191), and send the signature with the"
        " challenge's nonce"
    )
    assert allowed.status_code == 201, allowed.text
    row = await stored(conn)
    assert row is not None
    assert row[2] == bob.id
    # An operator's signature, when sent, is checked all the same.
    wrong = await signed_set(api, bob, STRANGER)
    assert (await api.put(token_path(), json=wrong, headers=bob.headers)).status_code == 403


async def test_an_agent_that_is_not_indexed_is_not_found(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await make_operator(conn, bob)
    other_chain = Identity(conn, chain_id=1)
    await other_chain.register(99, address(OWNER))
    # Feedback names agent 99 on our chain, but no identity event does.
    await chain.emit("NewFeedback", 99, registry="reputation", client_address="0x" + "cc" * 20)

    responses = [
        await api.post(challenge_path(99), json={"action": "delete"}, headers=alice.headers),
        await api.put(token_path(99), json={"token": TOKEN}, headers=bob.headers),
        await api.delete(token_path(99), headers=bob.headers),
    ]

    assert [r.status_code for r in responses] == [404, 404, 404]
    assert {error(r) for r in responses} == {f"agent 99 is not indexed on chain {CHAIN}"}


async def test_after_a_transfer_the_new_owner_signs(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await chain.transfer(AGENT, address(OWNER), address(STRANGER))
    await chain.transfer(AGENT, address(STRANGER), address(NEW_OWNER), same_block=True,
                         log_index=5)  # fmt: skip
    # Later events of the agent that name no owner change nothing.
    await chain.emit("URIUpdated", AGENT, token_uri="https://agent.example/v2.json",
                     updated_by=address(STRANGER))  # fmt: skip
    await chain.emit("NewFeedback", AGENT, registry="reputation", client_address=address(STRANGER))

    by_old = await api.put(
        token_path(), json=await signed_set(api, alice, OWNER), headers=alice.headers
    )
    by_previous = await api.put(
        token_path(), json=await signed_set(api, alice, STRANGER), headers=alice.headers
    )
    by_new = await api.put(
        token_path(), json=await signed_set(api, alice, NEW_OWNER), headers=alice.headers
    )

    assert [by_old.status_code, by_previous.status_code] == [403, 403]
    assert f"not the agent's owner {address(NEW_OWNER)}" in error(by_old)
    assert by_new.status_code == 201, by_new.text


async def test_a_transfer_written_while_the_token_was_set_retires_it(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    """The owner sets the token while the indexer writes a batch holding the agent's
    Transfer: its events carry the batch's start, before the token. The token was
    authorized under the owner event before that Transfer, which retires it."""
    response = await api.put(
        token_path(), json=await signed_set(api, alice, OWNER), headers=alice.headers
    )
    assert response.status_code == 201, response.text
    await fetched_registration(conn)
    assert await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=alice.id)
    await chain.transfer(AGENT, address(OWNER), address(NEW_OWNER))
    await conn.execute(
        "UPDATE events SET created_at = now() - interval '1 hour' WHERE block_number = %s",
        [chain.block],
    )
    with pytest.raises(DeliveryFailed, match="changed hands after its MCP token was set"):
        await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=alice.id)


async def test_a_burned_agent_has_no_owner_to_sign(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await make_operator(conn, bob)
    assert (await api.put(token_path(), json={"token": TOKEN}, headers=bob.headers)).is_success
    await chain.transfer(AGENT, address(OWNER), "0x" + "0" * 40)

    refused = await api.put(token_path(), json={"token": TOKEN}, headers=alice.headers)
    no_challenge = await api.post(
        challenge_path(), json={"action": "delete"}, headers=alice.headers
    )
    deleted = await api.delete(token_path(), headers=bob.headers)

    assert [refused.status_code, no_challenge.status_code] == [403, 403]
    assert (
        error(refused)
        == error(no_challenge)
        == (
            f"agent {AGENT} on chain {CHAIN} was burned (transferred to the zero address): it has"
            " no owner to sign; only an operator can change its token"
        )
    )
    assert deleted.status_code == 204


async def test_the_largest_agent_id(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    largest = 2**256 - 1
    await chain.register(largest, address(OWNER))

    response = await api.put(
        token_path(largest),
        json=await signed_set(api, alice, OWNER, agent_id=largest),
        headers=alice.headers,
    )

    assert response.status_code == 201, response.text
    assert response.json()["agent_id"] == str(largest)
    row = await stored(conn, largest)
    assert row is not None
    assert BOX.open(Sealed(bytes(row[0]), row[1]), agent_token_context(CHAIN, largest)) == TOKEN


# -- deleting it --------------------------------------------------------------------------


async def test_the_owner_deletes_the_token_then_it_is_gone(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    assert (
        await api.put(token_path(), json=await signed_set(api, alice, OWNER), headers=alice.headers)
    ).is_success

    unsigned = await api.delete(token_path(), headers=alice.headers)
    by_stranger = await api.delete(
        token_path(), params=await signed_delete(api, alice, STRANGER), headers=alice.headers
    )
    expired = await signed_delete(api, alice, OWNER)
    await expire(conn, expired["nonce"])
    stale = await api.delete(token_path(), params=expired, headers=alice.headers)
    assert [unsigned.status_code, by_stranger.status_code, stale.status_code] == [403, 403, 403]
    assert error(unsigned).startswith(
        f"to delete the MCP token of agent {AGENT} on chain {CHAIN}, a signature from its owner"
    )
    assert await stored(conn) is not None

    deleted = await api.delete(
        token_path(), params=await signed_delete(api, alice, OWNER), headers=alice.headers
    )
    again = await api.delete(
        token_path(), params=await signed_delete(api, alice, OWNER), headers=alice.headers
    )

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert await stored(conn) is None
    assert again.status_code == 404
    assert error(again) == f"agent {AGENT} on chain {CHAIN} has no MCP token"


async def test_an_operator_deletes_without_a_signature(
    api: ApiClient, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await make_operator(conn, bob)
    assert (await api.put(token_path(), json={"token": TOKEN}, headers=bob.headers)).is_success

    assert (await api.delete(token_path(), headers=bob.headers)).status_code == 204
    assert (await api.delete(token_path(), headers=bob.headers)).status_code == 404


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (token_path(chain_id=0), "chain_id"),
        (token_path(chain_id=-1), "chain_id"),
        (token_path(chain_id="base"), "chain_id"),
        (token_path(chain_id=2**63), "chain_id"),
        (token_path(chain_id="84532.0"), "chain_id"),
        (token_path(chain_id="+84532"), "chain_id"),
        (token_path("abc"), "agent_id"),
        (token_path("-1"), "agent_id"),
        (token_path("007"), "agent_id"),
        (token_path("1.5"), "agent_id"),
        (token_path(str(2**256)), "agent_id"),
        (token_path("9" * 79), "agent_id"),
    ],
)
async def test_bad_paths_name_the_parameter(
    api: ApiClient, alice: Account, path: str, field: str
) -> None:
    for response in [
        await api.put(path, json={"token": TOKEN}, headers=alice.headers),
        await api.delete(path, headers=alice.headers),
    ]:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == field
        if field == "agent_id":
            assert error(response) == (
                "agent_id: must be an agent id: a whole number from 0 to 2^256 - 1, in decimal"
                " without leading zeros"
            )


async def test_bad_bodies_name_the_field_and_never_echo_the_token(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    good = await signed_set(api, alice, OWNER)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"token": ""}, "token"),
        ({"token": "x" * 4097}, "token"),
        ({"token": f"{TOKEN}\n"}, "token"),
        ({"token": f" {TOKEN}"}, "token"),
        ({"token": f"{TOKEN}\u2603"}, "token"),
        ({"token": 12345}, "token"),
        ({}, "token"),
        ({**good, "signature": good["signature"][:-2]}, "signature"),
        ({**good, "signature": "0xnothex"}, "signature"),
        ({**good, "signature": good["signature"][:-2] + "1d"}, "signature"),
        ({**good, "nonce": None}, "nonce"),
        ({**good, "nonce": good["nonce"].upper()}, "nonce"),
        ({**good, "nonce": good["nonce"][:-1]}, "nonce"),
        ({**good, "nonce": 12345}, "nonce"),
        ({"token": TOKEN, "nonce": good["nonce"]}, "signature"),
        ({**good, "issued_at": "2026-01-01T12:00:00Z"}, "issued_at"),  # the old message's
        ({**good, "owner": address(STRANGER)}, "owner"),
    ]
    for body, field in cases:
        response = await api.put(token_path(), json=body, headers=alice.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field, body
        assert TOKEN not in response.text
    assert await stored(conn) is None


async def test_a_signature_that_recovers_no_key_is_bad_input(
    api: ApiClient, alice: Account, chain: Identity
) -> None:
    body = await signed_set(api, alice, OWNER)
    body["signature"] = "0x" + "00" * 31 + "05" + body["signature"][66:]  # r = 5: no curve point

    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "signature", "message": "the signature is not valid: no public key recovers"
                                          " from it"},
    ]  # fmt: skip


async def test_signing_in_is_required(api: ApiClient, alice: Account, chain: Identity) -> None:
    put = await api.put(token_path(), json=await signed_set(api, alice, OWNER))
    delete = await api.delete(token_path(), params=await signed_delete(api, alice, OWNER))
    asked = await api.post(challenge_path(), json={"action": "delete"})

    assert [put.status_code, delete.status_code, asked.status_code] == [401, 401, 401]


# -- the token stays secret ---------------------------------------------------------------


async def test_the_token_is_never_in_responses_or_logs(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    await make_operator(conn, bob)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        responses = [
            await api.put(
                token_path(), json=await signed_set(api, alice, OWNER), headers=alice.headers
            ),
            await api.put(
                token_path(), json=await signed_set(api, alice, OWNER), headers=alice.headers
            ),
            await api.put(
                token_path(), json=await signed_set(api, alice, STRANGER), headers=alice.headers
            ),
            await api.put(token_path(), json={"token": TOKEN}, headers=alice.headers),
            await api.put(token_path(), json={"token": TOKEN}, headers=bob.headers),
            await api.put(token_path(), json={"token": TOKEN + "\x00"}, headers=bob.headers),
            await api.put(token_path(99), json={"token": TOKEN}, headers=bob.headers),
            await api.delete(token_path(), headers=bob.headers),
        ]

    assert [r.status_code for r in responses] == [201, 200, 403, 403, 200, 422, 404, 204]
    for response in responses:
        assert TOKEN not in response.text
        assert TOKEN not in str(response.headers)
    assert [e["event"] for e in events if e["event"].startswith("api.mcp_token")] == [
        "api.mcp_token_set", "api.mcp_token_set", "api.mcp_token_set", "api.mcp_token_deleted",
    ]  # fmt: skip
    assert TOKEN not in repr(events)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in repr(record.__dict__) for record in caplog.records)


async def test_the_openapi_document_describes_the_routes(api: ApiClient) -> None:
    document = (await api.get("/openapi.json")).json()
    routes = document["paths"]["/api/v1/agents/{chain_id}/{agent_id}/mcp-token"]
    challenges = document["paths"]["/api/v1/agents/{chain_id}/{agent_id}/mcp-token/challenge"]

    assert set(routes) == {"put", "delete"}
    assert set(challenges) == {"post"}
    assert "mcp-token/challenge" in routes["put"]["description"]
    assert "mcp-token/challenge" in routes["delete"]["description"]
    assert "EIP-4361" in challenges["post"]["description"]
    assert {p["name"] for p in routes["delete"]["parameters"]} == {
        "chain_id", "agent_id", "signature", "nonce",
    }  # fmt: skip
