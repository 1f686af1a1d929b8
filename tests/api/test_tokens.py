"""Agents' MCP tokens through the real application: set / rotate / delete with the owner's
EIP-191 signature or as an operator, stored so that the `mcp` action reads them, never shown."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from eth_keys.datatypes import PrivateKey
from psycopg.types.json import Jsonb
from structlog.testing import capture_logs

from erc8004_backend.actions.mcp import load_mcp_target
from erc8004_backend.api.tokens import delete_token_message, set_token_message
from erc8004_backend.chain.signatures import personal_message_hash
from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS
from erc8004_backend.encryption import Sealed, SecretBox, agent_token_context
from tests.api.conftest import Account, ApiClient

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


def personal_sign(key: PrivateKey, message: str) -> str:
    signature = key.sign_msg_hash(personal_message_hash(message))
    raw = signature.to_bytes()  # r || s || v, v as the recovery id 0 or 1
    return "0x" + (raw[:64] + bytes([raw[64] + 27])).hex()


def now_text(shift: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + shift).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_path(agent_id: int | str = AGENT, chain_id: int | str = CHAIN) -> str:
    return f"/agents/{chain_id}/{agent_id}/mcp-token"


def signed_set(
    key: PrivateKey,
    token: str = TOKEN,
    *,
    agent_id: int = AGENT,
    issued_at: str | None = None,
    signed_token: str | None = None,
) -> dict[str, Any]:
    """The body of a PUT signed by `key` (over `signed_token` when given, to swap tokens)."""
    issued_at = issued_at or now_text()
    message = set_token_message(CHAIN, agent_id, signed_token or token, issued_at)
    return {"token": token, "signature": personal_sign(key, message), "issued_at": issued_at}


def signed_delete(
    key: PrivateKey, *, agent_id: int = AGENT, issued_at: str | None = None
) -> dict[str, str]:
    issued_at = issued_at or now_text()
    message = delete_token_message(CHAIN, agent_id, issued_at)
    return {"signature": personal_sign(key, message), "issued_at": issued_at}


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
    response = await api.put(token_path(), json=signed_set(OWNER), headers=alice.headers)

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
    target = await load_mcp_target(conn, CHAIN, AGENT, BOX)  # the action worker's code path
    assert (target.header_name, target.header_value) == ("Authorization", f"Bearer {TOKEN}")

    rotated = await api.put(
        token_path(), json=signed_set(OWNER, "the-next-token"), headers=alice.headers
    )

    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["created"] is False
    assert rotated.json()["updated_at"] > body["updated_at"]
    target = await load_mcp_target(conn, CHAIN, AGENT, BOX)
    assert target.header_value == "Bearer the-next-token"


async def test_a_signature_by_another_key_is_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    body = signed_set(STRANGER)
    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 403
    message = set_token_message(CHAIN, AGENT, TOKEN, body["issued_at"]).replace("\n", "\\n")
    assert error(response) == (
        f"the signature is from {address(STRANGER)}, not the agent's owner {address(OWNER)}:"
        f' the owner signs with personal_sign (EIP-191) exactly the text "{message}"'
    )
    assert await stored(conn) is None


async def test_a_signature_over_another_token_is_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    # The owner's signature for one token, replayed with another token in its place.
    body = signed_set(OWNER, "a-token-of-the-attacker", signed_token=TOKEN)
    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 403
    assert error(response).startswith("the signature is from 0x")
    assert f"not the agent's owner {address(OWNER)}" in error(response)
    assert await stored(conn) is None


async def test_signatures_for_another_agent_chain_or_action_are_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await chain.register(8, address(OWNER))
    for_agent_8 = signed_set(OWNER, agent_id=8)
    issued_at = now_text()
    on_chain_1 = personal_sign(OWNER, set_token_message(1, AGENT, TOKEN, issued_at))
    delete = signed_delete(OWNER)
    set_signature = personal_sign(OWNER, delete_token_message(CHAIN, AGENT, delete["issued_at"]))

    refused = [
        await api.put(token_path(), json=for_agent_8, headers=alice.headers),
        await api.put(
            token_path(),
            json={"token": TOKEN, "signature": on_chain_1, "issued_at": issued_at},
            headers=alice.headers,
        ),
        await api.put(
            token_path(),
            json={"token": TOKEN, "signature": set_signature, "issued_at": delete["issued_at"]},
            headers=alice.headers,
        ),
    ]

    assert [response.status_code for response in refused] == [403, 403, 403]
    assert await stored(conn) is None


@pytest.mark.parametrize("shift", [timedelta(minutes=-11), timedelta(minutes=11)])
async def test_stale_or_future_signatures_are_refused(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection,
    shift: timedelta,
) -> None:  # fmt: skip
    issued_at = now_text(shift)
    response = await api.put(
        token_path(), json=signed_set(OWNER, issued_at=issued_at), headers=alice.headers
    )

    assert response.status_code == 403
    assert error(response).startswith(
        f"the signature is stale: issued_at {issued_at} is more than 10 minutes from the"
        " server's time"
    )
    assert "cannot be replayed" in error(response)
    assert await stored(conn) is None


async def test_a_recent_signature_with_an_offset_spelled_out_is_accepted(
    api: ApiClient, alice: Account, chain: Identity
) -> None:
    issued_at = (datetime.now(UTC) - timedelta(minutes=9)).isoformat()  # "...+00:00", microseconds
    response = await api.put(
        token_path(), json=signed_set(OWNER, issued_at=issued_at), headers=alice.headers
    )

    assert response.status_code == 201, response.text


async def test_without_a_signature_only_operators_may(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await make_operator(conn, bob)

    refused = await api.put(token_path(), json={"token": TOKEN}, headers=alice.headers)
    allowed = await api.put(token_path(), json={"token": TOKEN}, headers=bob.headers)

    assert refused.status_code == 403
    assert error(refused).startswith(
        f"to set the MCP token of agent {AGENT} on chain {CHAIN}, a signature from its owner"
        f" {address(OWNER)} is required (operators need none): the owner signs with"
        ' personal_sign (EIP-191) the text "erc8004-backend: set the MCP token of agent 7 on'
        f" chain {CHAIN}\\ntoken sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}\\n"
        'issued at: <issued_at>"'
    )
    assert allowed.status_code == 201, allowed.text
    row = await stored(conn)
    assert row is not None
    assert row[2] == bob.id
    # An operator's signature, when sent, is checked all the same.
    wrong = await api.put(token_path(), json=signed_set(STRANGER), headers=bob.headers)
    assert wrong.status_code == 403


async def test_an_agent_that_is_not_indexed_is_not_found(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await make_operator(conn, bob)
    other_chain = Identity(conn, chain_id=1)
    await other_chain.register(99, address(OWNER))
    # Feedback names agent 99 on our chain, but no identity event does.
    await chain.emit("NewFeedback", 99, registry="reputation", client_address="0x" + "cc" * 20)

    responses = [
        await api.put(token_path(99), json=signed_set(OWNER, agent_id=99), headers=alice.headers),
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

    by_old = await api.put(token_path(), json=signed_set(OWNER), headers=alice.headers)
    by_previous = await api.put(token_path(), json=signed_set(STRANGER), headers=alice.headers)
    by_new = await api.put(token_path(), json=signed_set(NEW_OWNER), headers=alice.headers)

    assert [by_old.status_code, by_previous.status_code] == [403, 403]
    assert f"not the agent's owner {address(NEW_OWNER)}" in error(by_old)
    assert by_new.status_code == 201, by_new.text


async def test_a_burned_agent_has_no_owner_to_sign(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    await make_operator(conn, bob)
    assert (await api.put(token_path(), json={"token": TOKEN}, headers=bob.headers)).is_success
    await chain.transfer(AGENT, address(OWNER), "0x" + "0" * 40)

    refused = await api.put(token_path(), json={"token": TOKEN}, headers=alice.headers)
    deleted = await api.delete(token_path(), headers=bob.headers)

    assert refused.status_code == 403
    assert error(refused) == (
        f"agent {AGENT} on chain {CHAIN} was burned (transferred to the zero address): it has"
        " no owner to sign; only an operator can change its token"
    )
    assert deleted.status_code == 204


async def test_the_largest_agent_id(
    api: ApiClient, alice: Account, chain: Identity, conn: psycopg.AsyncConnection
) -> None:
    largest = 2**256 - 1
    await chain.register(largest, address(OWNER))

    response = await api.put(
        token_path(largest), json=signed_set(OWNER, agent_id=largest), headers=alice.headers
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
    assert (await api.put(token_path(), json=signed_set(OWNER), headers=alice.headers)).is_success

    unsigned = await api.delete(token_path(), headers=alice.headers)
    by_stranger = await api.delete(
        token_path(), params=signed_delete(STRANGER), headers=alice.headers
    )
    stale = await api.delete(
        token_path(),
        params=signed_delete(OWNER, issued_at=now_text(timedelta(minutes=-30))),
        headers=alice.headers,
    )
    assert [unsigned.status_code, by_stranger.status_code, stale.status_code] == [403, 403, 403]
    assert error(unsigned).startswith(
        f"to delete the MCP token of agent {AGENT} on chain {CHAIN}, a signature from its owner"
    )
    assert await stored(conn) is not None

    deleted = await api.delete(token_path(), params=signed_delete(OWNER), headers=alice.headers)
    again = await api.delete(token_path(), params=signed_delete(OWNER), headers=alice.headers)

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


async def test_a_plus_offset_in_the_query_must_be_percent_encoded(
    api: ApiClient, alice: Account, chain: Identity
) -> None:
    assert (await api.put(token_path(), json=signed_set(OWNER), headers=alice.headers)).is_success
    issued_at = now_text().replace("Z", "+00:00")
    params = signed_delete(OWNER, issued_at=issued_at)
    raw = f"?signature={params['signature']}&issued_at={issued_at}"  # "+" reads as a space

    unencoded = await api.delete(token_path() + raw, headers=alice.headers)
    encoded = await api.delete(token_path(), params=params, headers=alice.headers)

    assert unencoded.status_code == 422
    assert unencoded.json()["error"]["details"][0]["field"] == "issued_at"
    assert encoded.status_code == 204


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (token_path(chain_id=0), "chain_id"),
        (token_path(chain_id=-1), "chain_id"),
        (token_path(chain_id="base"), "chain_id"),
        (token_path(chain_id=2**63), "chain_id"),
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
    good = signed_set(OWNER)
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
        ({**good, "issued_at": None}, "issued_at"),
        ({**good, "issued_at": "2026-01-01T12:00:00+02:00"}, "issued_at"),
        ({**good, "issued_at": "2026-01-01T12:00:00"}, "issued_at"),
        ({**good, "issued_at": "yesterday"}, "issued_at"),
        ({**good, "issued_at": 1767268800}, "issued_at"),
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
    body = signed_set(OWNER)
    body["signature"] = "0x" + "00" * 31 + "05" + body["signature"][66:]  # r = 5: no curve point

    response = await api.put(token_path(), json=body, headers=alice.headers)

    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "signature", "message": "the signature is not valid: no public key recovers"
                                          " from it"},
    ]  # fmt: skip


async def test_signing_in_is_required(api: ApiClient, chain: Identity) -> None:
    put = await api.put(token_path(), json=signed_set(OWNER))
    delete = await api.delete(token_path(), params=signed_delete(OWNER))

    assert [put.status_code, delete.status_code] == [401, 401]


# -- the token stays secret ---------------------------------------------------------------


async def test_the_token_is_never_in_responses_or_logs(
    api: ApiClient, alice: Account, bob: Account, chain: Identity, conn: psycopg.AsyncConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    await make_operator(conn, bob)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        responses = [
            await api.put(token_path(), json=signed_set(OWNER), headers=alice.headers),
            await api.put(token_path(), json=signed_set(OWNER), headers=alice.headers),
            await api.put(token_path(), json=signed_set(STRANGER), headers=alice.headers),
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

    assert set(routes) == {"put", "delete"}
    assert "token sha256:" in routes["put"]["description"]
    assert "issued at:" in routes["delete"]["description"]
    assert {p["name"] for p in routes["delete"]["parameters"]} == {
        "chain_id", "agent_id", "signature", "issued_at",
    }  # fmt: skip
