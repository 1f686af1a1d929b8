"""Logs our devnet contracts do not emit, emitted from a registry's own address on anvil.

    await emit_raw_log(devnet, devnet.registries.reputation, [topic0], b"")
    await emit_interim_feedback(devnet, agent_id=0, score=30, tag1="refund", ...)

The registry's code is swapped (`anvil_setCode`) for a few bytes that emit one log with the
given topics and data, called once, and put back, so the log is a real log of a real block
at the registry's address (what the indexer fetches), and the registry works as before
afterwards (its storage is untouched). For ABI versions other chains ran (the interim
`NewFeedback` of January 2026) and for events nothing decodes (an unknown topic0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from erc8004_backend.devnet import Devnet, TxRequest

INTERIM_NEW_FEEDBACK = (
    "NewFeedback(uint256,address,uint64,uint8,string,string,string,string,bytes32)"
)


def topic_of(signature: str) -> str:
    return "0x" + keccak(signature.encode()).hex()


def log_emitter(topics: Sequence[str], data: bytes) -> bytes:
    """EVM code that emits LOG<len(topics)> with `topics` and `data`, then stops. The data
    sits after the code's instructions and is copied into memory first."""
    if len(topics) > 4:
        raise ValueError("a log has at most four topics")
    header_size = 9 + 33 * len(topics) + 6 + 1  # copy, topics, size and offset, LOGn + STOP
    code = bytes([0x61]) + len(data).to_bytes(2, "big")  # PUSH2 size
    code += bytes([0x61]) + header_size.to_bytes(2, "big")  # PUSH2 offset in the code
    code += bytes([0x60, 0x00, 0x39])  # PUSH1 0 (memory offset), CODECOPY
    for topic in reversed(topics):  # LOGn takes topic0 nearest the top of the stack
        code += bytes([0x7F]) + bytes.fromhex(topic.removeprefix("0x").rjust(64, "0"))
    code += bytes([0x61]) + len(data).to_bytes(2, "big")  # PUSH2 size
    code += bytes([0x60, 0x00, 0xA0 + len(topics), 0x00])  # PUSH1 0, LOGn, STOP
    assert len(code) == header_size
    return code + data


async def emit_raw_log(
    devnet: Devnet, address: str, topics: Sequence[str], data: bytes = b""
) -> dict[str, Any]:
    """Emit one log from `address` in a transaction of its own; returns its receipt."""
    original = await devnet.rpc.call("eth_getCode", [address, "latest"])
    await devnet.rpc.call("anvil_setCode", [address, "0x" + log_emitter(topics, data).hex()])
    try:
        sender = devnet.activity.accounts[0]
        return await devnet.activity.transactor.send(
            TxRequest(sender, address, "0x", 200_000, f"raw log {topics[0] if topics else ''}")
        )
    finally:
        await devnet.rpc.call("anvil_setCode", [address, original])


async def emit_interim_feedback(
    devnet: Devnet,
    *,
    agent_id: int,
    client: str,
    feedback_index: int,
    score: int,
    tag1: str,
    tag2: str,
    endpoint: str,
    feedback_uri: str,
    feedback_hash: bytes = b"\x00" * 32,
) -> dict[str, Any]:
    """The interim ABI's NewFeedback (testnets, January 2026) from the reputation registry."""
    topics = [
        topic_of(INTERIM_NEW_FEEDBACK),
        "0x" + abi_encode(["uint256"], [agent_id]).hex(),
        "0x" + abi_encode(["address"], [client]).hex(),
        "0x" + keccak(tag1.encode()).hex(),  # an indexed string is its hash
    ]
    data = abi_encode(
        ["uint64", "uint8", "string", "string", "string", "bytes32"],
        [feedback_index, score, tag2, endpoint, feedback_uri, feedback_hash],
    )
    return await emit_raw_log(devnet, devnet.registries.reputation, topics, data)
