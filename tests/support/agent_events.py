"""Registry events written straight into `events`, then the read model built from them with
read_model_apply / read_model_rebuild (migration 20), as the indexer would: for tests of what
is read from the model, without a chain.

    chain = ChainEvents(conn, 31337)
    agent = await chain.register(owner=ALICE, uri="ipfs://agent")
    await chain.feedback(agent, CLIENT, 87)
    await chain.rebuild()

Each event is a block of its own, one minute after the previous one (block times and
numbers grow together, as on a chain), unless `same_block=True` puts it in the last block.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ZERO = "0x" + "00" * 20
REGISTRY_OF = {
    "Registered": "identity", "URIUpdated": "identity", "MetadataSet": "identity",
    "Transfer": "identity", "NewFeedback": "reputation", "FeedbackRevoked": "reputation",
    "ResponseAppended": "reputation", "ValidationRequest": "validation",
    "ValidationResponse": "validation",
}  # fmt: skip


def address(n: int) -> str:
    """A distinct lower-case address for each n."""
    return f"0x{n:040x}"


def uri_digest(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()


class ChainEvents:
    def __init__(self, conn: psycopg.AsyncConnection[Any], chain_id: int,
                 start: datetime = T0) -> None:  # fmt: skip
        self.conn = conn
        self.chain_id = chain_id
        self.start = start
        self.block = 0
        self.log_index = 0
        self.next_agent = itertools.count()
        self.last_index: dict[tuple[int, str], int] = {}
        self.applied_to = -1  # the last block read_model_apply has seen

    @property
    def time(self) -> datetime:
        return self.start + timedelta(minutes=self.block)

    async def event(self, event_type: str, *, same_block: bool = False, **fields: Any) -> int:
        """Writes one event; returns its block."""
        if same_block:
            self.log_index += 1
        else:
            self.block += 1
            self.log_index = 0
        columns = ["chain_id", "registry", "event_type", "contract_address", "block_number",
                   "block_hash", "block_time", "transaction_hash", "transaction_index",
                   "log_index", *fields]  # fmt: skip
        values = [self.chain_id, REGISTRY_OF[event_type], event_type, "0x" + "80" * 20,
                  self.block, f"0x{self.chain_id:08x}{self.block:056x}", self.time,
                  f"0x{self.block:032x}{self.log_index:032x}", 0, self.log_index,
                  *fields.values()]  # fmt: skip
        await self.conn.execute(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))})",
            values,
        )
        return self.block

    async def register(self, owner: str, uri: str = "", *, same_block: bool = False) -> int:
        agent_id = next(self.next_agent)
        await self.event("Transfer", same_block=same_block, agent_id=agent_id,
                         from_address=ZERO, to_address=owner)  # fmt: skip
        await self.event("Registered", same_block=True, agent_id=agent_id, owner=owner,
                         token_uri=uri)  # fmt: skip
        await self.set_wallet(agent_id, owner, same_block=True)
        return agent_id

    async def set_wallet(self, agent_id: int, wallet: str | None, *,
                         same_block: bool = False) -> None:  # fmt: skip
        value = bytes.fromhex(wallet[2:]) if wallet else b""
        await self.event("MetadataSet", same_block=same_block, agent_id=agent_id,
                         metadata_key="agentWallet", metadata_value=value)  # fmt: skip

    async def transfer(self, agent_id: int, from_owner: str, to_owner: str) -> None:
        await self.event("Transfer", agent_id=agent_id, from_address=from_owner,
                         to_address=to_owner)  # fmt: skip
        await self.set_wallet(agent_id, None, same_block=True)  # as the registry clears it

    async def update_uri(self, agent_id: int, uri: str, by: str) -> None:
        await self.event("URIUpdated", agent_id=agent_id, token_uri=uri, updated_by=by)

    async def feedback(
        self,
        agent_id: int,
        client: str,
        value: int,
        decimals: int = 0,
        tag1: str = "",
        tag2: str = "",
        *,
        same_block: bool = False,
    ) -> int:
        """A v1 NewFeedback; returns its index."""  # fmt: skip
        index = self.last_index.get((agent_id, client), 0) + 1
        self.last_index[agent_id, client] = index
        await self.event("NewFeedback", same_block=same_block, agent_id=agent_id,
                         client_address=client, feedback_index=index, value=value,
                         value_decimals=decimals, tag1=tag1, tag2=tag2, endpoint="",
                         file_uri="", file_hash="0x" + "00" * 32)  # fmt: skip
        return index

    async def revoke(self, agent_id: int, client: str, index: int) -> None:
        await self.event("FeedbackRevoked", agent_id=agent_id, client_address=client,
                         feedback_index=index)  # fmt: skip

    async def respond(self, agent_id: int, client: str, index: int, responder: str,
                      uri: str = "ipfs://response") -> None:  # fmt: skip
        await self.event("ResponseAppended", agent_id=agent_id, client_address=client,
                         feedback_index=index, responder=responder, response_uri=uri,
                         response_hash="0x" + "11" * 32)  # fmt: skip

    async def request_validation(self, agent_id: int, validator: str, request_hash: str) -> None:
        await self.event("ValidationRequest", agent_id=agent_id, validator_address=validator,
                         request_hash=request_hash, request_uri="ipfs://request")  # fmt: skip

    async def respond_validation(self, agent_id: int, validator: str, request_hash: str,
                                 response: int, tag: str = "") -> None:  # fmt: skip
        await self.event("ValidationResponse", agent_id=agent_id, validator_address=validator,
                         request_hash=request_hash, response=response, tag=tag,
                         response_uri="ipfs://answer", response_hash="0x" + "22" * 32)  # fmt: skip

    async def registration(self, agent_id: int, uri: str, document: dict[str, Any] | None, *,
                           mcp: str | None = None, a2a: str | None = None,
                           status: str = "fetched") -> None:  # fmt: skip
        """The registration file the indexer would have read from `uri`."""
        await self.conn.execute(
            "INSERT INTO agent_registrations (chain_id, agent_id, uri_digest, agent_uri, status,"
            " document, mcp_endpoint, a2a_endpoint, fetched_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())",
            [self.chain_id, agent_id, uri_digest(uri), uri, status,
             Jsonb(document) if document is not None else None, mcp, a2a],
        )  # fmt: skip

    async def rebuild(self) -> None:
        """The model of every event so far, rebuilt whole."""
        await self.conn.execute("SELECT read_model_rebuild(%s)", [self.chain_id])
        self.applied_to = self.block

    async def apply(self) -> None:
        """The events since the last apply or rebuild, applied as the indexer's next batch."""
        await self.conn.execute(
            "SELECT read_model_apply(%s, %s, %s)", [self.chain_id, self.applied_to + 1, self.block]
        )
        self.applied_to = self.block
