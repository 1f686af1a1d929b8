"""The demo stores its agent's MCP token as the owner's wallet would authorize it, through the
real API: a challenge, the owner's signature of it, the PUT."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest

from erc8004_backend.chain.config import DEVNET_CHAIN_ID
from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS
from erc8004_backend.demo.runner import OWNER_KEY, DemoError, store_agent_token
from erc8004_backend.encryption import Sealed, SecretBox, agent_token_context
from tests.api.conftest import api_client, make_account

AGENT = 3


async def register(url: str, agent_id: int, owner: str) -> None:
    """The agent's Registered event, as the indexer stores it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
            " owner) VALUES (%s, 'identity', 'Registered', %s, 1, %s, %s, %s, 0, 0, %s, %s)",
            [DEVNET_CHAIN_ID, "0x" + "80" * 20, "0x" + "11" * 32, datetime.now(UTC),
             "0x" + "22" * 32, agent_id, owner],
        )  # fmt: skip


async def test_the_demo_stores_the_token_once_the_agent_is_indexed(migrated_url: str) -> None:
    async with api_client(migrated_url) as api:
        demo = await make_account(api, "demo_user")
        storing = asyncio.create_task(
            store_agent_token(api, demo.headers, AGENT, "the-demo-agents-token")
        )
        await asyncio.sleep(0.3)  # the indexer is late: the challenge is a 404 meanwhile
        assert not storing.done()
        await register(migrated_url, AGENT, OWNER_KEY.public_key.to_address())
        await asyncio.wait_for(storing, 30)

    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        row = await (await conn.execute(
            "SELECT token_ciphertext, key_id FROM agent_mcp_tokens"
            " WHERE chain_id = %s AND agent_id = %s", [DEVNET_CHAIN_ID, AGENT],
        )).fetchone()  # fmt: skip
        used = await (await conn.execute("SELECT count(*) FROM mcp_token_challenges")).fetchone()
    assert row is not None
    box = SecretBox.from_spec(DEVELOPMENT_TOKEN_KEYS)
    sealed = Sealed(bytes(row[0]), row[1])
    assert box.open(sealed, agent_token_context(DEVNET_CHAIN_ID, AGENT)) == "the-demo-agents-token"
    assert used == (0,)  # the challenge was consumed


async def test_the_demo_says_when_the_owner_is_not_its_key(migrated_url: str) -> None:
    await register(migrated_url, AGENT, "0x" + "ab" * 20)
    async with api_client(migrated_url) as api:
        demo = await make_account(api, "demo_user")
        with pytest.raises(
            DemoError, match=r"cannot store the demo agent's MCP token: .*not the agent's owner"
        ):
            await store_agent_token(api, demo.headers, AGENT, "the-demo-agents-token")
