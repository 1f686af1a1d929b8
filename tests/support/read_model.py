"""The read model as rows, to compare the indexer's with a rebuild from `events`."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from erc8004_backend.devnet import Devnet
from erc8004_backend.devnet.contracts import CONTRACT_NAMES, Function, load_artifact

# Every table of the model, with the order that makes its rows comparable.
MODEL_TABLES: dict[str, str] = {
    "agents": "agent_id",
    "agent_metadata": "agent_id, key",
    "feedback": "agent_id, client_address, feedback_index",
    "feedback_clients": "agent_id, client_address",
    "feedback_responses": "agent_id, client_address, feedback_index, block_number, log_index",
    "validation_requests": "request_hash",
}

Model = dict[str, list[tuple[Any, ...]]]


def _comparable(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


async def model_rows(conn: psycopg.AsyncConnection[Any], chain_id: int) -> Model:
    """Every row of the chain's model, table by table, in key order (as tuples, whatever
    rows `conn` makes)."""
    model: Model = {}
    for table, order in MODEL_TABLES.items():
        async with conn.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(
                f"SELECT * FROM {table} WHERE chain_id = %s ORDER BY {order}", [chain_id]
            )
            model[table] = [tuple(map(_comparable, row)) for row in await cursor.fetchall()]
    return model


class _RollbackError(Exception):
    """Leaves a transaction that must change nothing."""


async def rebuilt_model(conn: psycopg.AsyncConnection[Any], chain_id: int) -> Model:
    """The chain's model as a rebuild from its stored events makes it; changes nothing."""
    rebuilt: Model = {}
    try:
        async with conn.transaction():
            await conn.execute("SELECT read_model_rebuild(%s)", [chain_id])
            rebuilt = await model_rows(conn, chain_id)
            raise _RollbackError
    except _RollbackError:
        pass
    return rebuilt


async def assert_model_equals_rebuild(conn: psycopg.AsyncConnection[Any], chain_id: int) -> Model:
    """The stored model equals a rebuild from `events`, table by table; returns it."""
    stored = await model_rows(conn, chain_id)
    rebuilt = await rebuilt_model(conn, chain_id)
    for table in MODEL_TABLES:
        # Rows named by their first columns (chain and key): URIs can be long.
        missing = sorted(row[:5] for row in set(rebuilt[table]) - set(stored[table]))
        extra = sorted(row[:5] for row in set(stored[table]) - set(rebuilt[table]))
        assert not missing, (
            f"{table}: {len(missing)} rows of the rebuild are not stored, e.g. {missing[:3]}"
        )
        assert not extra, (
            f"{table}: {len(extra)} stored rows are not in the rebuild, e.g. {extra[:3]}"
        )
        assert stored[table] == rebuilt[table], f"{table}: rows differ in order or count"
    return stored


async def _calls(devnet: Devnet, address: str, function: Function,
                 argument_lists: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:  # fmt: skip
    """`function` called with each argument list at the head, in batches."""
    results: list[tuple[Any, ...]] = []
    for start in range(0, len(argument_lists), 200):
        chunk = argument_lists[start : start + 200]
        replies = await devnet.rpc.batch(
            [
                ("eth_call", [{"to": address, "data": function.encode(*args)}, "latest"])
                for args in chunk
            ]
        )
        results += [function.decode_output(reply) for reply in replies]
    return results


async def assert_model_matches_chain(conn: psycopg.AsyncConnection, devnet: Devnet) -> None:
    """The model says what the devnet's registries say: every agent's owner, wallet and URI,
    every client's last index, every v1 feedback as readFeedback reads it, every validation
    request as getValidationStatus reads it. (The devnet's earlier-ABI feedback is an event
    only: its contract stores nothing, so it is left out.)"""
    chain_id = devnet.registries.chain_id
    identity, reputation, validation = (load_artifact(name) for name in CONTRACT_NAMES)
    registries = devnet.registries

    (total,) = (await _calls(devnet, registries.identity, identity.function("totalAgents"), [()]))[
        0
    ]
    cursor = await conn.execute(
        "SELECT agent_id, owner, agent_wallet, agent_uri FROM agents WHERE chain_id = %s"
        " ORDER BY agent_id",
        [chain_id],
    )
    agents = [(int(agent_id), *rest) for agent_id, *rest in await cursor.fetchall()]
    assert [agent[0] for agent in agents] == list(range(total)), "one row per agent"
    ids = [(agent[0],) for agent in agents]
    owners = await _calls(devnet, registries.identity, identity.function("ownerOf"), ids)
    wallets = await _calls(devnet, registries.identity, identity.function("getAgentWallet"), ids)
    uris = await _calls(devnet, registries.identity, identity.function("tokenURI"), ids)
    zero = "0x" + "0" * 40
    on_chain = [
        (agent_id, owner.lower(), None if wallet == zero else wallet.lower(), uri)
        for (agent_id,), (owner,), (wallet,), (uri,) in zip(ids, owners, wallets, uris,
                                                             strict=True)
    ]  # fmt: skip
    assert agents == on_chain

    cursor = await conn.execute(
        "SELECT c.agent_id, c.client_address, c.last_index FROM feedback_clients AS c"
        " WHERE c.chain_id = %s AND NOT EXISTS (SELECT 1 FROM feedback AS f"
        "   WHERE f.chain_id = c.chain_id AND f.agent_id = c.agent_id"
        "     AND f.client_address = c.client_address AND f.abi_version = 'v0')",
        [chain_id],
    )
    clients = [(int(agent), client, int(last)) for agent, client, last in await cursor.fetchall()]
    last_indexes = await _calls(devnet, registries.reputation,
                                reputation.function("getLastIndex"),
                                [(agent, client) for agent, client, _ in clients])  # fmt: skip
    assert [last for _, _, last in clients] == [last for (last,) in last_indexes]

    cursor = await conn.execute(
        "SELECT agent_id, client_address, feedback_index, value, value_decimals,"
        " coalesce(tag1, ''), coalesce(tag2, ''), revoked FROM feedback"
        " WHERE chain_id = %s AND abi_version = 'v1'",
        [chain_id],
    )
    feedback = [(int(agent), client, int(index), int(value), decimals, tag1, tag2, revoked)
                for agent, client, index, value, decimals, tag1, tag2, revoked
                in await cursor.fetchall()]  # fmt: skip
    read = await _calls(devnet, registries.reputation, reputation.function("readFeedback"),
                        [row[:3] for row in feedback])  # fmt: skip
    assert [row[3:] for row in feedback] == [tuple(values) for values in read]

    cursor = await conn.execute(
        "SELECT request_hash, validator_address, agent_id, coalesce(response, 0),"
        " coalesce(response_hash, %s), coalesce(response_tag, ''), responded_at"
        " FROM validation_requests WHERE chain_id = %s",
        ["0x" + "0" * 64, chain_id],
    )
    requests = await cursor.fetchall()
    statuses = await _calls(devnet, registries.validation,
                            validation.function("getValidationStatus"),
                            [(bytes.fromhex(row[0][2:]),) for row in requests])  # fmt: skip
    expected = [
        (validator.lower(), agent, response, "0x" + response_hash.hex(), tag, last_update)
        for validator, agent, response, response_hash, tag, last_update in statuses
    ]
    stored = [
        (validator, int(agent), response, response_hash, tag,
         int(responded_at.timestamp()) if responded_at else 0)
        for _, validator, agent, response, response_hash, tag, responded_at in requests
    ]  # fmt: skip
    assert stored == expected
