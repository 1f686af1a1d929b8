"""Both decoders on logs that our devnet contracts really emitted, for every event type."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal, localcontext

from eth_hash.auto import keccak

from erc8004_backend.chain.decode import decode_log, decode_log_reference
from erc8004_backend.chain.events import SPECS, EventRow
from erc8004_backend.devnet import Devnet
from tests.support.devnet import registry_logs
from tests.support.raw_logs import emit_interim_feedback

BLOCK_TIME = datetime(2026, 11, 24, tzinfo=UTC)
ZERO_ADDRESS = "0x" + "00" * 20
INTERIM_CLIENT = "0x" + "1c" * 20


async def decoded_devnet_rows(devnet: Devnet) -> list[EventRow]:
    await devnet.activity.run(events=400)
    await devnet.activity.emit_batch(600)
    await devnet.activity.give_legacy_feedback(score=42, tag1=b"refund", tag2=b"fast")
    # Our contracts emit only the current and the October draft's feedback: the interim one
    # is emitted raw from the reputation registry's address.
    await emit_interim_feedback(devnet, agent_id=0, client=INTERIM_CLIENT, feedback_index=1,
                                score=37, tag1="refund", tag2="slow", endpoint="https://a.example",
                                feedback_uri="ipfs://bafkreiinterim")  # fmt: skip
    registries = devnet.chain_config().registry_addresses
    rows = []
    for entry in await registry_logs(devnet):
        registry = registries[entry["address"].lower()]
        fast = decode_log(entry, chain_id=31337, registry=registry, block_time=BLOCK_TIME)
        reference = decode_log_reference(entry, chain_id=31337, registry=registry,
                                         block_time=BLOCK_TIME)  # fmt: skip
        assert fast == reference, entry
        if fast is not None:
            rows.append(fast)
    return rows


async def test_every_event_type_decodes_the_same_both_ways_with_the_right_meaning(
    devnet: Devnet,
) -> None:
    rows = await decoded_devnet_rows(devnet)
    kinds = Counter((row.event_type, row.data.get("abi_version", "v1")) for row in rows)
    assert set(kinds) == {(spec.name, spec.version) for spec in SPECS}

    by_transaction: dict[str, list[EventRow]] = defaultdict(list)
    for row in rows:
        by_transaction[row.transaction_hash].append(row)

    for row in rows:
        if row.event_type == "Registered":
            # register() emits Transfer (a mint), Registered, and MetadataSet(agentWallet).
            siblings = by_transaction[row.transaction_hash]
            assert any(s.event_type == "Transfer" and s.from_address == ZERO_ADDRESS
                       and s.to_address == row.owner and s.agent_id == row.agent_id
                       for s in siblings)  # fmt: skip
            assert any(s.event_type == "MetadataSet" and s.metadata_key == "agentWallet"
                       and s.metadata_value == bytes.fromhex(row.owner[2:])  # type: ignore[index]
                       and s.agent_id == row.agent_id for s in siblings)  # fmt: skip
        elif row.event_type == "NewFeedback" and "abi_version" not in row.data:
            assert row.value is not None
            assert row.value_decimals is not None
            with localcontext() as exact:
                exact.prec = 200  # int128 has 39 digits; the default context keeps 28
                assert row.score == Decimal(row.value).scaleb(-row.value_decimals)
            assert row.feedback_index is not None
            assert row.feedback_index >= 1
        elif row.event_type == "Transfer":
            assert row.owner == row.to_address
        elif row.event_type == "ValidationResponse":
            assert row.response is not None
            assert 0 <= row.response <= 100

    legacy = [row for row in rows if row.data.get("abi_version") == "v0"]
    assert [(r.value, r.value_decimals, r.score, r.tag1, r.tag2) for r in legacy] == [
        (42, 0, Decimal(42), "refund", "fast")
    ]
    interim = [row for row in rows if row.data.get("abi_version") == "interim"]
    assert [(r.agent_id, r.client_address, r.feedback_index, r.value, r.value_decimals, r.score,
             r.tag1, r.data["indexed_tag1_hash"], r.tag2, r.endpoint, r.file_uri)
            for r in interim] == [
        (0, INTERIM_CLIENT, 1, 37, 0, Decimal(37), None, "0x" + keccak(b"refund").hex(), "slow",
         "https://a.example", "ipfs://bafkreiinterim")
    ]  # fmt: skip


async def test_feedback_indexes_count_from_one_per_agent_and_client(devnet: Devnet) -> None:
    rows = await decoded_devnet_rows(devnet)
    indexes: dict[tuple[int, str], list[int]] = defaultdict(list)
    for row in rows:
        if row.event_type == "NewFeedback" and "abi_version" not in row.data:
            assert row.agent_id is not None
            assert row.client_address is not None
            assert row.feedback_index is not None
            indexes[(row.agent_id, row.client_address)].append(row.feedback_index)
    assert indexes
    for sequence in indexes.values():
        assert sequence == list(range(1, len(sequence) + 1))
