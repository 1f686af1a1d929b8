"""The registries' events on a real anvil, and the activity generator."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_hash.auto import keccak

from erc8004_backend.chain.decode import decode_log, decode_log_reference
from erc8004_backend.chain.events import SPECS_BY_TOPIC
from erc8004_backend.devnet import (
    ActivityError,
    ActivityGenerator,
    Devnet,
    TransactionFailedError,
    TxRequest,
    deploy_registries,
    start_devnet,
)
from erc8004_backend.devnet.activity.content import INT128_MAX, INT128_MIN
from erc8004_backend.devnet.contracts import (
    IDENTITY,
    LEGACY_NEW_FEEDBACK,
    REPUTATION,
    event_names,
    function_selector,
    load_artifact,
)
from tests.support.devnet import count_by_name, decode, registry_logs, require_anvil

ZERO = "0x" + "00" * 20
EVERY_EVENT = {
    "Transfer",
    "MetadataUpdate",
    "Registered",
    "MetadataSet",
    "URIUpdated",
    "Approval",
    "ApprovalForAll",
    "NewFeedback",
    "FeedbackRevoked",
    "ResponseAppended",
    "ValidationRequest",
    "ValidationResponse",
}


async def send(
    net: Devnet, sender: str, contract: str, function: str, *args: Any
) -> dict[str, Any]:
    address = net.registries.identity if contract == IDENTITY else net.registries.reputation
    data = load_artifact(contract).encode_call(function, *args)
    return await net.activity.transactor.send(TxRequest(sender, address, data, 3_000_000, function))


def named(receipt: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [decode(entry) for entry in receipt["logs"]]


async def test_register_emits_transfer_metadata_update_registered_metadata_set(
    devnet: Devnet,
) -> None:
    owner = devnet.activity.accounts[1]
    uri = "https://agents.example/first.json"
    receipt = await send(devnet, owner, IDENTITY, "register(string)", uri)
    events = named(receipt)
    assert [name for name, _ in events] == [
        "Transfer",
        "MetadataUpdate",
        "Registered",
        "MetadataSet",
    ]
    assert events[0][1] == {"from": ZERO, "to": owner, "tokenId": 0}  # agent ids start at 0
    assert events[1][1] == {"_tokenId": 0}
    assert events[2][1] == {"agentId": 0, "agentURI": uri, "owner": owner}
    assert events[3][1] == {
        "agentId": 0,
        "indexedMetadataKey": "0x" + keccak(b"agentWallet").hex(),
        "metadataKey": "agentWallet",
        "metadataValue": bytes.fromhex(owner[2:]),  # 20 bytes: abi.encodePacked(owner)
    }
    # The same logs through eth_getLogs, and every one is in the indexer's table or ignored.
    logs = await registry_logs(devnet, int(receipt["blockNumber"], 16))
    assert [entry["logIndex"] for entry in logs] == ["0x0", "0x1", "0x2", "0x3"]
    assert count_by_name(logs) == {
        "Transfer": 1,
        "MetadataUpdate": 1,
        "Registered": 1,
        "MetadataSet": 1,
    }

    # register() without a URI: no MetadataUpdate.
    receipt = await send(devnet, owner, IDENTITY, "register()")
    assert [name for name, _ in named(receipt)] == ["Transfer", "Registered", "MetadataSet"]
    assert named(receipt)[1][1]["agentURI"] == ""


async def test_updates_transfers_and_authorization(devnet: Devnet) -> None:
    owner, operator, other = devnet.activity.accounts[1:4]
    await send(devnet, owner, IDENTITY, "register(string)", "ipfs://bafkreiold")
    await send(devnet, owner, IDENTITY, "setApprovalForAll", operator, True)
    receipt = await send(devnet, operator, IDENTITY, "setAgentURI", 0, "https://new.example/a.json")
    assert named(receipt) == [
        (
            "URIUpdated",
            {"agentId": 0, "newURI": "https://new.example/a.json", "updatedBy": operator},
        ),
        ("MetadataUpdate", {"_tokenId": 0}),
    ]
    receipt = await send(devnet, owner, IDENTITY, "setMetadata", 0, "mcp.tools", b"\x00\xff")
    assert named(receipt)[0][1]["metadataValue"] == b"\x00\xff"
    with pytest.raises(TransactionFailedError, match="reserved key"):
        await send(devnet, owner, IDENTITY, "setMetadata", 0, "agentWallet", b"\x01")
    with pytest.raises(TransactionFailedError, match="not authorized"):
        await send(devnet, other, IDENTITY, "setAgentURI", 0, "https://evil.example")
    # A transfer clears the agent wallet, as the deployed registry does.
    receipt = await send(devnet, owner, IDENTITY, "transferFrom", owner, other, 0)
    assert named(receipt) == [
        ("Transfer", {"from": owner, "to": other, "tokenId": 0}),
        (
            "MetadataSet",
            {
                "agentId": 0,
                "indexedMetadataKey": "0x" + keccak(b"agentWallet").hex(),
                "metadataKey": "agentWallet",
                "metadataValue": b"",
            },
        ),
    ]
    with pytest.raises(TransactionFailedError, match="not authorized"):
        await send(devnet, operator, IDENTITY, "setAgentURI", 0, "https://late.example")


async def test_feedback_indexes_are_one_based_per_agent_and_client(devnet: Devnet) -> None:
    owner, alice, bob = devnet.activity.accounts[1:4]
    for _ in range(2):
        await send(devnet, owner, IDENTITY, "register(string)", "https://a.example")
    given = [(0, alice), (0, alice), (0, bob), (1, alice), (0, alice), (1, bob)]
    indexes = []
    for agent_id, client in given:
        receipt = await send(
            devnet,
            client,
            REPUTATION,
            "giveFeedback",
            agent_id,
            87,
            0,
            "starred",
            "",
            "",
            "",
            b"\x00" * 32,
        )
        [(name, values)] = named(receipt)
        assert name == "NewFeedback"
        assert (values["agentId"], values["clientAddress"]) == (agent_id, client)
        indexes.append(values["feedbackIndex"])
    assert indexes == [1, 2, 1, 1, 3, 1]
    receipt = await send(devnet, alice, REPUTATION, "revokeFeedback", 0, 2)
    assert named(receipt) == [
        ("FeedbackRevoked", {"agentId": 0, "clientAddress": alice, "feedbackIndex": 2})
    ]
    with pytest.raises(TransactionFailedError, match="already revoked"):
        await send(devnet, alice, REPUTATION, "revokeFeedback", 0, 2)
    receipt = await send(
        devnet,
        owner,
        REPUTATION,
        "appendResponse",
        0,
        alice,
        2,
        "ipfs://bafkreirefund",
        b"\x01" * 32,
    )
    assert named(receipt)[0][1]["responder"] == owner
    with pytest.raises(TransactionFailedError, match="no such feedback"):
        await send(devnet, owner, REPUTATION, "appendResponse", 1, alice, 2, "", b"\x00" * 32)


async def test_feedback_takes_extreme_values(devnet: Devnet) -> None:
    owner, client = devnet.activity.accounts[1:3]
    await send(devnet, owner, IDENTITY, "register(string)", "")
    long_tag = "Ünïcødé ✓ データ 🚀 " * 20
    cases = [(INT128_MIN, 18, "", long_tag), (INT128_MAX, 0, "refund", ""), (-1, 4, "🚀", "✓")]
    for value, decimals, tag1, tag2 in cases:
        receipt = await send(
            devnet,
            client,
            REPUTATION,
            "giveFeedback",
            0,
            value,
            decimals,
            tag1,
            tag2,
            "https://x.example/mcp",
            "",
            b"\x00" * 32,
        )
        values = named(receipt)[0][1]
        assert (values["value"], values["valueDecimals"]) == (value, decimals)
        assert (values["tag1"], values["tag2"]) == (tag1, tag2)
        assert values["indexedTag1"] == "0x" + keccak(tag1.encode()).hex()
    with pytest.raises(TransactionFailedError, match="valueDecimals"):
        await send(
            devnet, client, REPUTATION, "giveFeedback", 0, 1, 19, "", "", "", "", b"\x00" * 32
        )
    with pytest.raises(TransactionFailedError, match="agent does not exist"):
        await send(
            devnet, client, REPUTATION, "giveFeedback", 9, 1, 0, "", "", "", "", b"\x00" * 32
        )


async def test_generator_produces_every_event_type(devnet: Devnet) -> None:
    report = await devnet.activity.run(events=400)
    assert report.events == 400
    legacy = await devnet.activity.give_legacy_feedback(score=42)
    assert legacy.report.counts == {LEGACY_NEW_FEEDBACK: 1}
    steps = [await devnet.activity.step() for _ in range(5)]
    assert all(step.transactions == 1 for step in steps)

    head = await devnet.rpc.block_number()
    total = report.counts.copy()
    total.update(legacy.report.counts)
    for step in steps:
        total.update(step.counts)
    for topic0, name in event_names().items():
        query = {
            "address": list(devnet.registries.addresses.values()),
            "topics": [[topic0]],
            "fromBlock": "0x0",
            "toBlock": hex(head),
        }
        logs = await devnet.rpc.call("eth_getLogs", [query])
        assert len(logs) == total[name], name
    assert set(total) >= EVERY_EVENT
    assert set(devnet.activity.total.counts) == set(total)

    values = [decode(e)[1] for e in await registry_logs(devnet) if decode(e)[0] == "NewFeedback"]
    assert any(v["value"] < 0 for v in values)
    assert {v["valueDecimals"] for v in values} >= {0, 2}
    assert any(v["tag1"] == "" for v in values)
    assert any(v["tag1"] == "refund" for v in values)
    assert any(not v["tag1"].isascii() or not v["tag2"].isascii() for v in values)
    uris = [
        decode(e)[1]["agentURI"]
        for e in await registry_logs(devnet)
        if decode(e)[0] == "Registered"
    ]
    data_uris = [u for u in uris if u.startswith("data:application/json;base64,")]
    assert data_uris
    assert any(u.startswith("https://") for u in uris)
    document = json.loads(base64.b64decode(data_uris[0].split(",", 1)[1]))
    assert document["type"] == "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
    assert {s["name"] for s in document["services"]} & {"MCP", "A2A"}


async def test_indexer_decoders_agree_on_every_generated_log(devnet: Devnet) -> None:
    await devnet.activity.run(events=150)
    await devnet.activity.emit_batch(300)
    await devnet.activity.give_legacy_feedback()
    time_ = datetime.now(UTC)
    registries = {a: r for r, a in devnet.registries.addresses.items()}
    decoded = 0
    for entry in await registry_logs(devnet):
        if entry["topics"][0] not in SPECS_BY_TOPIC:
            continue
        registry = registries[entry["address"].lower()]
        fast = decode_log(entry, chain_id=31337, registry=registry, block_time=time_)
        reference = decode_log_reference(entry, chain_id=31337, registry=registry, block_time=time_)
        assert fast is not None
        assert fast == reference
        decoded += 1
    assert decoded == 150 + 300 + 1


async def test_batch_mode_emits_many_events_per_transaction(devnet: Devnet) -> None:
    started = time.perf_counter()
    report = await devnet.activity.emit_batch(3_000)
    assert time.perf_counter() - started < 10
    assert report.events == 3_000
    assert report.transactions * 20 <= report.events
    logs = await registry_logs(devnet)
    assert sum(1 for entry in logs if entry["topics"][0] in SPECS_BY_TOPIC) == 3_000
    assert count_by_name(logs) == report.counts
    assert EVERY_EVENT - {"Approval", "ApprovalForAll"} <= set(report.counts)
    again = await devnet.activity.emit_batch(7)  # small batches are exact too
    assert again.events == 7


async def test_the_same_seed_gives_the_same_events(devnet: Devnet) -> None:
    await devnet.activity.run(events=120)
    first = [(e["topics"], e["data"]) for e in await registry_logs(devnet)]
    async with devnet.node.rpc() as rpc:
        await rpc.call("anvil_reset", [])
        replay = ActivityGenerator(rpc, await deploy_registries(rpc), seed=0)
        await replay.run(events=120)
    second = [(e["topics"], e["data"]) for e in await registry_logs(devnet)]
    assert second == first


async def test_rate_and_stop(devnet: Devnet) -> None:
    started = time.monotonic()
    report = await devnet.activity.run(events=6, rate=20)
    assert report.events == 6
    assert time.monotonic() - started >= 0.2
    stop = asyncio.Event()
    task = asyncio.create_task(devnet.activity.run(rate=50, stop=stop))
    await asyncio.sleep(0.3)
    stop.set()
    endless = await asyncio.wait_for(task, 5)
    assert endless.events > 0


async def test_a_second_generator_picks_up_the_chain_state(devnet: Devnet) -> None:
    await devnet.activity.run(events=100)
    other = ActivityGenerator(devnet.rpc, devnet.registries, seed=1)
    await other.setup()
    assert other.agent_ids == devnet.activity.agent_ids
    report = await other.run(events=200)
    assert report.events == 200


async def test_scripted_registration_and_feedback(devnet: Devnet) -> None:
    owner = devnet.activity.accounts[3]
    registered = await devnet.activity.register_agent("https://demo.example/a.json", owner=owner)
    agent_id = registered.agent_id
    assert devnet.activity.owner_of(agent_id) == owner
    given = await devnet.activity.give_feedback(
        agent_id, 45, tag1="refund", file_uri="ipfs://bafkreidemo", file_hash=b"\x01" * 32
    )
    assert given.report.events == 1
    logs = await registry_logs(devnet, given.block_number)
    name, values = decode(logs[-1])
    assert name == "NewFeedback"
    assert values["agentId"] == agent_id
    assert values["value"] == 45
    assert values["tag1"] == "refund"
    assert values["clientAddress"].lower() != owner
    with pytest.raises(ActivityError, match="agent 9999 does not exist"):
        await devnet.activity.give_feedback(9999, 1)


async def test_scripted_validation_request_and_responses(devnet: Devnet) -> None:
    owner, validator = devnet.activity.accounts[2], devnet.activity.accounts[5]
    registered = await devnet.activity.register_agent("https://demo.example/v.json", owner=owner)
    agent_id = registered.agent_id
    requested = await devnet.activity.request_validation(
        agent_id, validator, request_uri="https://demo.example/request.json"
    )
    request_hash = requested.request_hash
    other = (await devnet.activity.request_validation(agent_id, validator)).request_hash
    assert len(request_hash) == 32
    assert other != request_hash
    first = await devnet.activity.respond_validation(request_hash, 50, tag="soft-finality")
    again = await devnet.activity.respond_validation(
        request_hash, 100, response_uri="ipfs://bafkreiok", response_hash=b"\x02" * 32
    )
    assert (first.report.events, again.report.events) == (1, 1)
    logs = await registry_logs(devnet, first.block_number - 2)
    decoded = [decode(entry) for entry in logs]
    requests = [values for name, values in decoded if name == "ValidationRequest"]
    assert [(r["validatorAddress"].lower(), r["agentId"], r["requestHash"]) for r in requests] == [
        (validator, agent_id, request_hash),
        (validator, agent_id, other),
    ]
    assert requests[0]["requestURI"] == "https://demo.example/request.json"
    responses = [values for name, values in decoded if name == "ValidationResponse"]
    assert [(r["validatorAddress"].lower(), r["agentId"], r["response"], r["tag"])
            for r in responses] == [(validator, agent_id, 50, "soft-finality"),
                                    (validator, agent_id, 100, "")]  # fmt: skip
    assert responses[1]["responseHash"] == b"\x02" * 32
    with pytest.raises(ActivityError, match="no validation request"):
        await devnet.activity.respond_validation(b"\x09" * 32, 1)
    with pytest.raises(ActivityError, match="from 0 to 100"):
        await devnet.activity.respond_validation(request_hash, 101)
    with pytest.raises(ActivityError, match="agent 9999 does not exist"):
        await devnet.activity.request_validation(9999, validator)


async def logs_of(net: Devnet, transaction_hash: str, block_number: int) -> list[dict[str, Any]]:
    """The decoded logs of one transaction, which must be in `block_number`."""
    logs = [e for e in await registry_logs(net) if e["transactionHash"] == transaction_hash]
    assert logs, f"no registry log in transaction {transaction_hash}"
    assert {int(e["blockNumber"], 16) for e in logs} == {block_number}
    return [decode(entry)[1] for entry in logs]


async def test_scripted_actions_return_what_they_created(devnet: Devnet) -> None:
    activity = devnet.activity
    owner, client, validator = activity.accounts[1], activity.accounts[2], activity.accounts[5]
    await activity.run(events=60)  # other agents and feedback first: nothing starts at 0 or 1
    registered = await activity.register_agent("https://demo.example/r.json", owner=owner)
    agent = registered.agent_id
    assert agent == max(activity.agent_ids) > 0
    assert (registered.owner, registered.uri) == (owner, "https://demo.example/r.json")
    assert registered.report.events == 3
    logs = await logs_of(devnet, registered.transaction_hash, registered.block_number)
    (on_chain,) = [values for values in logs if "agentURI" in values]  # Registered
    assert (on_chain["agentId"], on_chain["owner"], on_chain["agentURI"]) == (
        agent, owner, "https://demo.example/r.json")  # fmt: skip

    given = [await activity.give_feedback(agent, value, client=client) for value in (70, -3)]
    assert [(g.agent_id, g.client, g.feedback_index) for g in given] == [
        (agent, client, 1), (agent, client, 2)]  # fmt: skip
    anyone = await activity.give_feedback(agent, 5)  # a random client, not the owner
    assert anyone.client not in (owner, "")
    for feedback in [*given, anyone]:
        (on_chain,) = await logs_of(devnet, feedback.transaction_hash, feedback.block_number)
        assert (on_chain["agentId"], on_chain["clientAddress"], on_chain["feedbackIndex"]) == (
            agent, feedback.client, feedback.feedback_index)  # fmt: skip

    revoked = await activity.revoke_feedback(agent, client.upper().replace("0X", "0x"), 2)
    assert (revoked.agent_id, revoked.client, revoked.feedback_index) == (agent, client, 2)
    (on_chain,) = await logs_of(devnet, revoked.transaction_hash, revoked.block_number)
    assert (on_chain["agentId"], on_chain["clientAddress"], on_chain["feedbackIndex"]) == (
        agent, client, 2)  # fmt: skip
    answer = await activity.append_response(agent, client, 1, response_uri="ipfs://bafkreianswer")
    other = await activity.append_response(agent, client, 1, responder=validator)
    assert [(r.agent_id, r.client, r.feedback_index, r.responder) for r in (answer, other)] == [
        (agent, client, 1, owner), (agent, client, 1, validator)]  # fmt: skip
    (on_chain,) = await logs_of(devnet, answer.transaction_hash, answer.block_number)
    assert (on_chain["agentId"], on_chain["clientAddress"], on_chain["feedbackIndex"],
            on_chain["responder"], on_chain["responseURI"]) == (
        agent, client, 1, owner, "ipfs://bafkreianswer")  # fmt: skip
    with pytest.raises(ActivityError, match="no feedback 3 of"):
        await activity.revoke_feedback(agent, client, 3)
    with pytest.raises(ActivityError, match="no feedback 9 of"):
        await activity.append_response(agent, client, 9)

    requested = await activity.request_validation(agent, validator)
    assert (requested.agent_id, requested.validator, requested.requester) == (
        agent, validator, owner)  # fmt: skip
    (on_chain,) = await logs_of(devnet, requested.transaction_hash, requested.block_number)
    assert on_chain["requestHash"] == requested.request_hash
    answered = await activity.respond_validation(requested.request_hash, 64, tag="x")
    assert (answered.request_hash, answered.agent_id, answered.validator, answered.response) == (
        requested.request_hash, agent, validator, 64)  # fmt: skip
    (on_chain,) = await logs_of(devnet, answered.transaction_hash, answered.block_number)
    assert (on_chain["requestHash"], on_chain["response"]) == (requested.request_hash, 64)

    legacy = await activity.give_legacy_feedback(agent, score=12, sender=client)
    assert (legacy.agent_id, legacy.client, legacy.score) == (agent, client, 12)
    (on_chain,) = await logs_of(devnet, legacy.transaction_hash, legacy.block_number)
    assert (on_chain["agentId"], on_chain["score"]) == (agent, 12)
    assert legacy.block_number > answered.block_number > requested.block_number


async def test_random_activity_leaves_hands_off_agents_alone(devnet: Devnet) -> None:
    await devnet.activity.run(events=30)
    kept = (await devnet.activity.register_agent("https://demo.example/kept.json")).agent_id
    devnet.activity.hands_off.add(kept)
    # Its own feedback and validation requests, which random revocations and responses pick
    # from as from any other: a tenth of the feedback and requests on the chain.
    feedback = len(devnet.activity.context.state.feedback)
    for value in range(max(3, feedback // 9)):
        await devnet.activity.give_feedback(kept, value)
    for _ in range(3):
        await devnet.activity.request_validation(kept, devnet.activity.accounts[5])
    after = await devnet.rpc.block_number() + 1
    await devnet.activity.run(events=400)
    touched: Counter[str] = Counter()
    for entry in await registry_logs(devnet, after):
        name, values = decode(entry)
        if values.get("agentId", values.get("tokenId")) == kept:
            touched[name] += 1
    assert not touched, touched
    await devnet.activity.give_feedback(kept, 80)  # a script still can


# -- the random activity's realism, for property tests -------------------------------------------

WALLET_KEY = "0x" + keccak(b"agentWallet").hex()
SAFE_TRANSFER_WITH_DATA = (
    "0x" + function_selector("safeTransferFrom(address,address,uint256,bytes)").hex()
)


async def transactions_of(net: Devnet, logs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The transactions of these logs, by hash."""
    hashes = sorted({entry["transactionHash"] for entry in logs})
    found = await net.rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
    return dict(zip(hashes, found, strict=True))


async def call_identity(net: Devnet, function: str, *args: Any) -> Any:
    """A view function of the identity registry, on the latest block (addresses lowercase)."""
    identity = load_artifact(IDENTITY)
    call = {"to": net.registries.identity, "data": identity.encode_call(function, *args)}
    (value,) = identity.function(function).decode_output(
        await net.rpc.call("eth_call", [call, "latest"])
    )
    return value.lower() if isinstance(value, str) else value


async def test_random_activity_unsets_wallets_and_transfers_every_way(devnet: Devnet) -> None:
    weights = {"register": 4, "transfer": 6, "unset_wallet": 3, "approve_operator": 2,
               "feedback": 2}  # fmt: skip
    activity = ActivityGenerator(devnet.rpc, devnet.registries, seed=11, weights=weights)
    report = await activity.run(events=400)
    assert report.events == 400
    logs = await registry_logs(devnet)
    by_transaction: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for entry in logs:
        by_transaction.setdefault(entry["transactionHash"], []).append(decode(entry))
    # unsetAgentWallet: a transaction with only MetadataSet(agentWallet, "").
    unsets = [events for events in by_transaction.values()
              if [name for name, _ in events] == ["MetadataSet"]
              and events[0][1]["indexedMetadataKey"] == WALLET_KEY]  # fmt: skip
    assert len(unsets) >= 5
    assert all(events[0][1]["metadataValue"] == b"" for events in unsets)
    transfers = [(e, values) for e in logs for name, values in [decode(e)]
                 if name == "Transfer" and values["from"] != ZERO]  # fmt: skip
    # To oneself: Transfer without the wallet's clearing; to another: the wallet cleared.
    to_self = [values for _, values in transfers if values["from"] == values["to"]]
    assert to_self
    for entry, values in transfers:
        names = [name for name, _ in by_transaction[entry["transactionHash"]]]
        assert names == (["Transfer"] if values["from"] == values["to"]
                         else ["Transfer", "MetadataSet"])  # fmt: skip
    sent = await transactions_of(devnet, [entry for entry, _ in transfers])
    senders = {entry["transactionHash"]: sent[entry["transactionHash"]]["from"].lower()
               for entry, _ in transfers}  # fmt: skip
    assert any(senders[e["transactionHash"]] != values["from"] for e, values in transfers), (
        "no transfer sent by an operator"
    )
    inputs = {tx["input"][:10] for tx in sent.values()}
    assert SAFE_TRANSFER_WITH_DATA in inputs
    # The generator's model of owners and wallets is the chain's.
    for agent_id in activity.agent_ids:
        assert activity.owner_of(agent_id) == await call_identity(devnet, "ownerOf", agent_id)
        wallet = await call_identity(devnet, "getAgentWallet", agent_id)
        assert activity.wallet_of(agent_id) == (None if wallet == ZERO else wallet)


async def test_many_clients_give_and_revoke_feedback(devnet: Devnet) -> None:
    activity = ActivityGenerator(devnet.rpc, devnet.registries, seed=5, clients=40,
                                 weights={"register": 2, "feedback": 10, "revoke": 3,
                                          "respond": 2})  # fmt: skip
    await activity.run(events=400)
    events = [decode(entry) for entry in await registry_logs(devnet)]
    accounts = set(activity.accounts)
    givers = {values["clientAddress"] for name, values in events if name == "NewFeedback"}
    assert len(givers - accounts) >= 30  # beyond the node's 10 accounts
    assert givers - accounts <= set(activity.clients)
    revokers = {values["clientAddress"] for name, values in events if name == "FeedbackRevoked"}
    assert revokers - accounts, "no client beyond the node's accounts revoked its feedback"
    assert {activity.owner_of(agent_id) for agent_id in activity.agent_ids} <= accounts


async def test_feedback_values_mix_every_decimals_and_extremes(devnet: Devnet) -> None:
    activity = ActivityGenerator(devnet.rpc, devnet.registries, seed=2,
                                 weights={"register": 1, "feedback": 20})  # fmt: skip
    await activity.run(events=500)
    feedback = [v for name, v in map(decode, await registry_logs(devnet)) if name == "NewFeedback"]
    decimals = {v["valueDecimals"] for v in feedback}
    assert {0, 18} <= decimals
    assert len(decimals) >= 10
    assert any(v["value"] < 0 for v in feedback)
    assert {INT128_MIN, INT128_MAX} & {v["value"] for v in feedback}
    assert any(v["tag1"] == "" for v in feedback)
    assert any(not v["tag1"].isascii() for v in feedback)


async def test_the_same_seed_reproduces_a_run_with_many_clients() -> None:
    require_anvil()
    runs, accounts = [], set()
    for _ in range(2):
        async with start_devnet(seed=9, clients=20) as net:
            await net.activity.run(events=300)
            await net.activity.emit_batch(300)
            runs.append(await registry_logs(net))
            accounts = set(net.activity.accounts)
    first, second = ([(e["topics"], e["data"]) for e in logs] for logs in runs)
    assert first == second
    values = [decode(entry)[1] for entry in runs[0]]
    assert {v["clientAddress"] for v in values if "clientAddress" in v} - accounts
    wallets = [v["metadataValue"] for v in values if v.get("metadataKey") == "agentWallet"]
    assert b"" in wallets  # cleared by transfers and unsetAgentWallet


async def test_weights_name_known_kinds(devnet: Devnet) -> None:
    with pytest.raises(ActivityError, match="unknown kinds of action: 'mint'"):
        ActivityGenerator(devnet.rpc, devnet.registries, weights={"mint": 1})
    with pytest.raises(ActivityError, match="at least one kind"):
        ActivityGenerator(devnet.rpc, devnet.registries, weights={"feedback": 0})
