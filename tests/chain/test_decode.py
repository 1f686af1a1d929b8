"""The fast decoder against eth-abi's, and both against the values that were encoded."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.chain.decode import (
    DecodeError,
    bytes32_text,
    decode_log,
    decode_log_reference,
)
from erc8004_backend.chain.encode import encode_log
from erc8004_backend.chain.events import EVENT_COLUMNS, IGNORED_EVENTS, SPECS, EventSpec

BLOCK_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ADDRESS = "0x" + "ab" * 20

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "uint8": st.integers(0, 2**8 - 1),
    "uint64": st.integers(0, 2**64 - 1),
    "uint256": st.integers(0, 2**256 - 1),
    "int128": st.integers(-(2**127), 2**127 - 1),
    "address": st.binary(min_size=20, max_size=20),
    "bytes32": st.binary(min_size=32, max_size=32),
    "string": st.one_of(st.text(), st.text(min_size=300, max_size=2000), st.just("")),
    "bytes": st.binary(max_size=600),
}


def values_for(spec: EventSpec) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({p.name: VALUES[p.type] for p in spec.params})


@st.composite
def spec_and_values(draw: st.DrawFn) -> tuple[EventSpec, dict[str, Any]]:
    spec = draw(st.sampled_from(SPECS))
    return spec, draw(values_for(spec))


def log_of(spec: EventSpec, values: dict[str, Any]) -> dict[str, Any]:
    return encode_log(
        spec,
        values,
        address=ADDRESS,
        block_number=7,
        block_hash="0x" + "0c" * 32,
        transaction_hash="0x" + "0d" * 32,
        transaction_index=3,
        log_index=9,
    )


def expected(param_type: str, value: Any, indexed: bool) -> Any:
    if indexed and param_type in ("string", "bytes"):
        raw = value.encode() if isinstance(value, str) else value
        return "0x" + keccak(raw).hex()
    if param_type in ("address", "bytes32"):
        return "0x" + value.hex()
    if param_type == "string":
        return value.replace("\x00", "\ufffd")
    return value


@settings(max_examples=400, deadline=None)
@given(spec_and_values())
def test_fast_decoder_equals_eth_abi_and_the_encoded_values(
    case: tuple[EventSpec, dict[str, Any]],
) -> None:
    spec, values = case
    log = log_of(spec, values)
    row = decode_log(log, chain_id=84532, registry=spec.registry, block_time=BLOCK_TIME)
    reference = decode_log_reference(
        log, chain_id=84532, registry=spec.registry, block_time=BLOCK_TIME
    )
    assert row is not None
    assert row == reference
    assert (row.event_type, row.registry, row.chain_id) == (spec.name, spec.registry, 84532)
    assert (row.block_number, row.transaction_index, row.log_index) == (7, 3, 9)
    assert row.contract_address == ADDRESS
    assert row.block_time == BLOCK_TIME
    by_column = row._asdict()
    for param in spec.params:
        want = expected(param.type, values[param.name], param.indexed)
        if param.target.startswith("data."):
            assert row.data[param.target[5:]] == want
        else:
            assert by_column[param.target] == want, param.name
        if param.type == "string" and not param.indexed and "\x00" in values[param.name]:
            assert row.data[f"{param.target}_hex"] == "0x" + values[param.name].encode().hex()
    if spec.name == "NewFeedback":
        decimals = row.value_decimals or 0
        with localcontext() as context:
            context.prec = 400
            assert row.score == Decimal(row.value or 0) / Decimal(10) ** decimals


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SPECS), st.binary(max_size=700))
def test_malformed_data_raises_decode_error_and_nothing_else(spec: EventSpec, data: bytes) -> None:
    log = log_of(spec, {p.name: VALUES_EXAMPLE[p.type] for p in spec.params})
    log["data"] = "0x" + data.hex()
    try:
        row = decode_log(log, chain_id=1, registry=spec.registry, block_time=BLOCK_TIME)
    except DecodeError:
        return
    # Whatever the fast path accepts, the reference decodes to the same row.
    assert row == decode_log_reference(
        log, chain_id=1, registry=spec.registry, block_time=BLOCK_TIME
    )


VALUES_EXAMPLE: dict[str, Any] = {
    "uint8": 1,
    "uint64": 2,
    "uint256": 3,
    "int128": -4,
    "address": b"\x01" * 20,
    "bytes32": b"\x02" * 32,
    "string": "tag",
    "bytes": b"\x03",
}


def test_invalid_utf8_is_kept_exactly_beside_a_readable_text() -> None:
    spec = next(s for s in SPECS if s.name == "URIUpdated")
    log = log_of(spec, {"agentId": 0, "newURI": "x", "updatedBy": b"\x01" * 20})
    # Replace the string's bytes "x" by an invalid UTF-8 byte of the same length.
    log["data"] = log["data"].replace("78" + "00" * 31, "ff" + "00" * 31)
    row = decode_log(log, chain_id=1, registry="identity", block_time=BLOCK_TIME)
    assert row is not None
    assert row.token_uri == "\ufffd"
    assert row.data == {"token_uri_hex": "0xff"}
    assert row.agent_id == 0  # agent 0 is a real agent, never "missing"


def test_unknown_and_foreign_topics_are_skipped_not_decoded() -> None:
    spec = next(s for s in SPECS if s.name == "NewFeedback" and s.version == "v1")
    log = log_of(spec, {p.name: VALUES_EXAMPLE[p.type] for p in spec.params})
    # The right topic from the wrong registry's contract is not ours to decode.
    assert decode_log(log, chain_id=1, registry="identity", block_time=BLOCK_TIME) is None
    log["topics"] = ["0x" + "99" * 32, *log["topics"][1:]]
    assert decode_log(log, chain_id=1, registry="reputation", block_time=BLOCK_TIME) is None
    assert (
        decode_log({**log, "topics": []}, chain_id=1, registry="reputation", block_time=BLOCK_TIME)
        is None
    )


def test_a_wrong_topic_count_is_a_decode_error() -> None:
    spec = next(s for s in SPECS if s.name == "Transfer")
    log = log_of(spec, {"from": b"\x00" * 20, "to": b"\x01" * 20, "tokenId": 5})
    log["topics"] = log["topics"][:3]  # an ERC-20 style Transfer has the value in data
    with pytest.raises(DecodeError, match="indexed values"):
        decode_log(log, chain_id=1, registry="identity", block_time=BLOCK_TIME)


def test_the_table_covers_the_v1_events_and_the_earlier_feedback_abi() -> None:
    names = {(s.registry, s.name, s.version) for s in SPECS}
    assert names == {
        ("identity", "Registered", "v1"),
        ("identity", "URIUpdated", "v1"),
        ("identity", "MetadataSet", "v1"),
        ("identity", "Transfer", "v1"),
        ("reputation", "NewFeedback", "v1"),
        ("reputation", "FeedbackRevoked", "v1"),
        ("reputation", "ResponseAppended", "v1"),
        ("reputation", "NewFeedback", "v0"),
        ("reputation", "NewFeedback", "interim"),
        ("validation", "ValidationRequest", "v1"),
        ("validation", "ValidationResponse", "v1"),
    }
    v1 = next(s for s in SPECS if s.name == "NewFeedback" and s.version == "v1")
    assert v1.signature == (
        "NewFeedback(uint256,address,uint64,int128,uint8,string,string,string,string,string,bytes32)"
    )
    assert "MetadataUpdate" in IGNORED_EVENTS.values()
    assert EVENT_COLUMNS[-1] == "data"


def test_the_interim_feedback_abi_decodes_its_score_as_a_value_of_no_decimals() -> None:
    """The NewFeedback testnets ran in January 2026, encoded by eth-abi from its signature
    alone: tag1 is indexed, so the log holds only its keccak256 hash."""
    signature = "NewFeedback(uint256,address,uint64,uint8,string,string,string,string,bytes32)"
    client = "0x" + "c1" * 20
    log = {
        "address": ADDRESS,
        "topics": [
            "0x" + keccak(signature.encode()).hex(),
            "0x" + abi_encode(["uint256"], [0]).hex(),  # agent 0 is a real agent
            "0x" + abi_encode(["address"], [client]).hex(),
            "0x" + keccak(b"refund").hex(),
        ],
        "data": "0x" + abi_encode(
            ["uint64", "uint8", "string", "string", "string", "bytes32"],
            [3, 87, "fast", "https://agent.example/mcp", "ipfs://bafkreiinterim", b"\x05" * 32],
        ).hex(),
        "blockNumber": "0x7", "blockHash": "0x" + "0c" * 32, "transactionHash": "0x" + "0d" * 32,
        "transactionIndex": "0x3", "logIndex": "0x9", "removed": False,
    }  # fmt: skip
    row = decode_log(log, chain_id=84532, registry="reputation", block_time=BLOCK_TIME)
    assert row is not None
    assert row == decode_log_reference(
        log, chain_id=84532, registry="reputation", block_time=BLOCK_TIME
    )
    assert row.event_type == "NewFeedback"
    assert (row.agent_id, row.client_address, row.feedback_index) == (0, client, 3)
    assert (row.value, row.value_decimals, row.score) == (87, 0, Decimal(87))
    # Only the hash of tag1 is on chain: the column stays empty, the hash is in `data`
    # under the same key as the current ABI's indexed tag1.
    assert row.tag1 is None
    assert (row.tag2, row.endpoint) == ("fast", "https://agent.example/mcp")
    assert (row.file_uri, row.file_hash) == ("ipfs://bafkreiinterim", "0x" + "05" * 32)
    assert row.data == {
        "abi_version": "interim",
        "indexed_tag1_hash": "0x" + keccak(b"refund").hex(),
    }
    # From the identity registry's address it is not ours to decode.
    assert decode_log(log, chain_id=84532, registry="identity", block_time=BLOCK_TIME) is None


def test_bytes32_tags_of_the_earlier_abi() -> None:
    assert bytes32_text("0x" + b"refund".hex().ljust(64, "0")) == "refund"
    assert bytes32_text("0x" + "ff" * 32) is None
    assert bytes32_text("0x" + "00" * 32) == ""
