"""Raw logs built from values: the inverse of decoding, for property tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from erc8004_backend.chain.events import EventSpec


def encode_topic(type_: str, value: Any) -> str:
    if type_ in ("string", "bytes"):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return "0x" + keccak(raw).hex()
    return "0x" + abi_encode([type_], [value]).hex()


def encode_log(
    spec: EventSpec,
    values: Mapping[str, Any],
    *,
    address: str,
    block_number: int,
    block_hash: str,
    transaction_hash: str,
    transaction_index: int = 0,
    log_index: int = 0,
) -> dict[str, Any]:
    """A log as `eth_getLogs` returns it, for `spec` with parameter values by name."""
    topics = [spec.topic0] + [encode_topic(p.type, values[p.name]) for p in spec.topics]
    data = abi_encode([p.type for p in spec.body], [values[p.name] for p in spec.body])
    return {
        "address": address,
        "topics": topics,
        "data": "0x" + data.hex(),
        "blockNumber": hex(block_number),
        "blockHash": block_hash,
        "transactionHash": transaction_hash,
        "transactionIndex": hex(transaction_index),
        "logIndex": hex(log_index),
        "removed": False,
    }
