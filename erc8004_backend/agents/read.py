"""Reading the read model: agents, their feedback and their validations.

The indexer keeps the model (migration 20: `agents`, `agent_metadata`, `feedback`,
`feedback_clients`, `feedback_responses`, `validation_requests`) in the transaction of each
batch; this module only reads it, for the REST API, the MCP server and trigger conditions.
The functions take any async connection (each sets its own row factory) and return frozen
records; turning rows into records is pure. The reads follow the spec's read functions where
there is one (getClients, getLastIndex, readFeedback, readAllFeedback, getResponseCount).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from erc8004_backend.database.queries import load_queries

QUERIES = load_queries("erc8004_backend.agents", "read.sql")

Row = Mapping[str, Any]


@dataclass(frozen=True)
class RegistrationFile:
    """What an agent's registration file says, as the indexer last read it from the agent's
    current URI. `status`: `pending` (not read yet, or being read again), `fetched` or
    `failed` (with `error`); None when the indexer has no row for the URI."""

    status: str | None
    name: str | None = None
    description: str | None = None
    image: str | None = None
    services: list[dict[str, Any]] = field(default_factory=list)
    mcp_endpoint: str | None = None
    a2a_endpoint: str | None = None
    web_endpoint: str | None = None
    active: bool | None = None
    x402_support: bool | None = None
    supported_trust: list[str] = field(default_factory=list)
    error: str | None = None
    fetched_at: datetime | None = None


@dataclass(frozen=True)
class AgentProfile:
    chain_id: int
    agent_id: int
    owner: str | None  # None: no Transfer of the agent stored (cannot happen on a registry)
    agent_wallet: str | None  # the reserved agentWallet; None: unset or cleared
    wallet_updated_at: datetime | None
    agent_uri: str | None
    uri_updated_at: datetime | None
    registered_block: int | None
    registered_at: datetime | None
    first_block: int  # the first and the last event that names the agent
    first_at: datetime
    last_block: int
    last_at: datetime
    registration: RegistrationFile
    metadata: dict[str, bytes]


@dataclass(frozen=True)
class Feedback:
    chain_id: int
    agent_id: int
    client_address: str
    feedback_index: int
    value: int  # fixed point: value / 10**value_decimals
    value_decimals: int
    tag1: str | None  # None: the interim ABI's indexed tag1, which a log holds only hashed
    tag2: str | None
    endpoint: str | None
    feedback_uri: str | None
    feedback_hash: str | None
    abi_version: str  # "v1", "interim" or "v0" (a 0-100 score, value_decimals 0)
    block_number: int
    log_index: int
    block_time: datetime
    transaction_hash: str
    revoked: bool
    revoked_block: int | None
    revoked_at: datetime | None
    response_count: int


@dataclass(frozen=True)
class Response:
    responder: str
    response_uri: str | None
    response_hash: str | None
    block_number: int
    log_index: int
    block_time: datetime
    transaction_hash: str


@dataclass(frozen=True)
class ValidationRequest:
    chain_id: int
    request_hash: str
    validator_address: str
    agent_id: int
    request_uri: str | None
    block_number: int
    log_index: int
    requested_at: datetime
    transaction_hash: str
    response: int | None  # the latest response, 0-100; None: not answered yet
    response_tag: str | None
    response_uri: str | None
    response_hash: str | None
    responded_block: int | None
    responded_at: datetime | None
    response_count: int


# -- rows to records (pure) -----------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def registration_file(row: Row) -> RegistrationFile:
    """The registration part of an `agent_profile` row. Fields of the file that are not of
    the spec's type (a name that is a number, an `active` that is a string) read as absent."""
    if row.get("registration_status") is None:
        return RegistrationFile(status=None)
    document = row.get("document")
    document = document if isinstance(document, dict) else {}
    services = [s for s in row.get("services") or [] if isinstance(s, dict)]
    web = next(
        (
            s["endpoint"]
            for s in services
            if isinstance(s.get("name"), str)
            and s["name"].strip().lower() == "web"
            and isinstance(s.get("endpoint"), str)
        ),
        None,
    )
    trust = document.get("supportedTrust")
    return RegistrationFile(
        status=row["registration_status"],
        name=_text(document.get("name")),
        description=_text(document.get("description")),
        image=_text(document.get("image")),
        services=services,
        mcp_endpoint=row.get("mcp_endpoint"),
        a2a_endpoint=row.get("a2a_endpoint"),
        web_endpoint=web,
        active=_flag(document.get("active")),
        x402_support=_flag(document.get("x402Support")),
        supported_trust=[t for t in trust if isinstance(t, str)] if isinstance(trust, list) else [],
        error=row.get("registration_error"),
        fetched_at=row.get("fetched_at"),
    )


def _int(value: Decimal | int | None) -> int | None:
    return None if value is None else int(value)


def agent_profile(row: Row, metadata: Sequence[Row]) -> AgentProfile:
    return AgentProfile(
        chain_id=row["chain_id"],
        agent_id=int(row["agent_id"]),
        owner=row["owner"],
        agent_wallet=row["agent_wallet"],
        wallet_updated_at=row["wallet_updated_at"],
        agent_uri=row["agent_uri"],
        uri_updated_at=row["uri_updated_at"],
        registered_block=row["registered_block"],
        registered_at=row["registered_at"],
        first_block=row["first_block"],
        first_at=row["first_at"],
        last_block=row["last_block"],
        last_at=row["last_at"],
        registration=registration_file(row),
        metadata={m["key"]: bytes(m["value"] or b"") for m in metadata},
    )


def feedback(row: Row) -> Feedback:
    return Feedback(
        **{
            **row,
            "agent_id": int(row["agent_id"]),
            "feedback_index": int(row["feedback_index"]),
            "value": int(row["value"]),
        }
    )


def validation_request(row: Row) -> ValidationRequest:
    return ValidationRequest(**{**row, "agent_id": int(row["agent_id"])})


# -- queries ----------------------------------------------------------------------------------


async def _rows(
    conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES[query], params)
        return await cursor.fetchall()


def _addresses(addresses: Sequence[str] | None) -> list[str] | None:
    """Addresses as the model stores them (lower case); None and empty mean "any"."""
    return [a.lower() for a in addresses] if addresses else None


async def get_agent(
    conn: psycopg.AsyncConnection[Any], chain_id: int, agent_id: int
) -> AgentProfile | None:
    """The agent's profile, or None when no event names it."""
    params = {"chain_id": chain_id, "agent_id": agent_id}
    rows = await _rows(conn, "agent_profile", params)
    if not rows:
        return None
    return agent_profile(rows[0], await _rows(conn, "agent_metadata", params))


async def get_clients(
    conn: psycopg.AsyncConnection[Any], chain_id: int, agent_id: int
) -> list[str]:
    """getClients: the agent's clients in the order of their first feedback."""
    rows = await _rows(conn, "agent_clients", {"chain_id": chain_id, "agent_id": agent_id})
    return [row["client_address"] for row in rows]


async def get_last_index(
    conn: psycopg.AsyncConnection[Any], chain_id: int, agent_id: int, client: str
) -> int:
    """getLastIndex: the client's last feedback index for the agent (0: none)."""
    params = {"chain_id": chain_id, "agent_id": agent_id, "client": client.lower()}
    return int((await _rows(conn, "last_index", params))[0]["last_index"])


async def read_all_feedback(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    *,
    clients: Sequence[str] | None = None,
    tag1: str | None = None,
    tag2: str | None = None,
    include_revoked: bool = False,
    limit: int | None = None,
) -> list[Feedback]:
    """readAllFeedback: without clients, each client in the order of its first feedback,
    else in the order given (a client given twice is read twice, as the contracts do); within
    a client by index. An empty tag matches any; revoked feedback only with include_revoked."""
    params = {
        "chain_id": chain_id,
        "agent_id": agent_id,
        "clients": _addresses(clients),
        "tag1": tag1,
        "tag2": tag2,
        "include_revoked": include_revoked,
        "limit": limit,
    }
    return [feedback(row) for row in await _rows(conn, "agent_feedback", params)]


async def read_feedback(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    client: str,
    feedback_index: int,
) -> Feedback | None:
    """readFeedback: one feedback by (agent, client, index), or None."""
    params = {"chain_id": chain_id, "agent_id": agent_id, "client": client.lower(),
              "feedback_index": feedback_index}  # fmt: skip
    rows = await _rows(conn, "one_feedback", params)
    return feedback(rows[0]) if rows else None


async def get_responses(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    client: str,
    feedback_index: int,
) -> list[Response]:
    """The responses appended to one feedback, in chain order."""
    params = {"chain_id": chain_id, "agent_id": agent_id, "client": client.lower(),
              "feedback_index": feedback_index}  # fmt: skip
    return [Response(**row) for row in await _rows(conn, "feedback_responses", params)]


async def get_response_count(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    *,
    client: str | None = None,
    feedback_index: int | None = None,
    responders: Sequence[str] | None = None,
) -> int:
    """getResponseCount: responses to the agent's feedback, of one client (None or the zero
    address: all, whatever the index), one feedback (None or 0: all of the client's), by
    some responders (None or empty: any; each listed one counts, twice if listed twice)."""
    one_client = client.lower() if client is not None and int(client, 16) != 0 else None
    params = {
        "chain_id": chain_id,
        "agent_id": agent_id,
        "client": one_client,
        "feedback_index": feedback_index if one_client is not None else None,
        "responders": _addresses(responders),
    }
    return int((await _rows(conn, "response_count", params))[0]["responses"])


async def get_validations(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    *,
    validators: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ValidationRequest]:
    """The agent's validation requests, newest first, of some validators (None: any)."""
    params = {"chain_id": chain_id, "agent_id": agent_id,
              "validators": _addresses(validators), "limit": limit}  # fmt: skip
    return [validation_request(row) for row in await _rows(conn, "agent_validations", params)]
