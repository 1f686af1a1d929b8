"""Deploying the registries and sending transactions."""

from __future__ import annotations

import time

import pytest

from erc8004_backend.chain.config import DEVNET, DEVNET_CHAIN_ID
from erc8004_backend.devnet import (
    AnvilNode,
    Devnet,
    TransactionFailedError,
    Transactor,
    TxRequest,
    deploy_registries,
)
from erc8004_backend.devnet.contracts import IDENTITY, REPUTATION, contract_address, load_artifact


async def test_registries_land_at_the_devnet_addresses(anvil_node: AnvilNode) -> None:
    async with anvil_node.rpc() as rpc:
        started = time.perf_counter()
        registries = await deploy_registries(rpc)
        assert time.perf_counter() - started < 5
        assert registries.addresses == {k: v.lower() for k, v in DEVNET.items()}
        assert registries.chain_id == DEVNET_CHAIN_ID
        assert registries.block_number == 1
        for address in registries.addresses.values():
            assert len(await rpc.call("eth_getCode", [address, "latest"])) > 1000
        reputation = load_artifact(REPUTATION).function("getIdentityRegistry")
        reply = await rpc.call(
            "eth_call", [{"to": registries.reputation, "data": reputation.encode()}, "latest"]
        )
        assert reputation.decode_output(reply) == (registries.identity,)


async def test_deploy_from_a_used_account_predicts_its_addresses(anvil_node: AnvilNode) -> None:
    """Two-byte RLP nonces: the addresses still come out as predicted."""
    async with anvil_node.rpc() as rpc:
        account = (await rpc.call("eth_accounts"))[3]
        await rpc.call("anvil_setNonce", [account, hex(300)])
        registries = await deploy_registries(rpc, deployer=account)
    assert registries.identity == contract_address(account, 300)
    assert registries.validation == contract_address(account, 302)


async def test_chain_config_points_at_the_node(devnet: Devnet) -> None:
    chain = devnet.chain_config()
    assert chain.name == "devnet"
    assert chain.rpc_urls == [devnet.url]
    assert chain.start_block == devnet.registries.block_number
    assert chain.registry_addresses[devnet.registries.reputation] == "reputation"


async def test_a_reverted_transaction_raises_with_its_reason(devnet: Devnet) -> None:
    sender = devnet.activity.accounts[1]
    data = load_artifact(REPUTATION).encode_call("revokeFeedback", 7, 1)
    request = TxRequest(sender, devnet.registries.reputation, data, 200_000, "revoke nothing")
    with pytest.raises(TransactionFailedError, match=r"revoke nothing.*no such feedback"):
        await devnet.activity.transactor.send(request)
    # The nonce bookkeeping survives a failure: the next transaction goes through.
    data = load_artifact(IDENTITY).encode_call("register(string)", "https://a.example/x.json")
    receipt = await devnet.activity.transactor.send(
        TxRequest(sender, devnet.registries.identity, data, 500_000, "register")
    )
    assert receipt["status"] == "0x1"


async def test_a_transaction_never_mined_is_named_when_the_wait_ends(devnet: Devnet) -> None:
    """One sent with a nonce past the sender's next stays in the pool: the wait for its
    receipt ends at the transactor's timeout, naming it."""
    sender = devnet.activity.accounts[3]
    nonce = int(await devnet.rpc.call("eth_getTransactionCount", [sender, "pending"]), 16)
    data = load_artifact(IDENTITY).encode_call("register(string)", "https://a.example/y.json")
    stuck = await devnet.rpc.call("eth_sendTransaction", [
        {"from": sender, "to": devnet.registries.identity, "data": data, "gas": hex(500_000),
         "nonce": hex(nonce + 1)},
    ])  # fmt: skip
    transactor = Transactor(devnet.rpc, receipt_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TransactionFailedError, match=f"1 transactions were not mined within"
                                                     f" 0.3 s \\(the first: {stuck}\\)"):  # fmt: skip
        await transactor.wait_for_receipts([stuck])
    assert time.monotonic() - started < 5


async def test_a_transaction_the_pool_holds_back_is_sent_again(anvil_node: AnvilNode) -> None:
    """Many transactions of one sender, sent in batches while anvil mines each at once: its
    pool now and then holds one back for good, although its nonce is due (one round of 300 in
    three or so on an idle machine, more under load: without the remedy, eight rounds all
    pass one time in twenty). The transactor sends such a one again, with twice the fees, and
    every round is mined in full, in nonce order."""
    async with anvil_node.rpc() as rpc:
        sender, receiver = (await rpc.call("eth_accounts"))[:2]
        transactor = Transactor(rpc, receipt_timeout=20)
        start = int(await rpc.call("eth_getTransactionCount", [sender, "latest"]), 16)
        for round_ in range(8):
            requests = [TxRequest(sender, receiver, "0x", 20_000_000, f"{round_}.{i}")
                        for i in range(300)]  # fmt: skip
            receipts = await transactor.send_all(requests)
            assert all(receipt["status"] == "0x1" for receipt in receipts)
            mined = await rpc.batch([("eth_getTransactionByHash", [r["transactionHash"]])
                                     for r in receipts])  # fmt: skip
            assert [int(tx["nonce"], 16) for tx in mined] == list(
                range(start + 300 * round_, start + 300 * (round_ + 1))
            )
        assert (
            int(await rpc.call("eth_getTransactionCount", [sender, "latest"]), 16) == start + 2400
        )


async def test_transactions_of_one_sender_in_blocks(devnet: Devnet) -> None:
    sender = devnet.activity.accounts[2]
    identity = load_artifact(IDENTITY)
    requests = [
        TxRequest(
            sender,
            devnet.registries.identity,
            identity.encode_call("register(string)", f"https://a.example/{i}"),
            500_000,
            f"register {i}",
        )
        for i in range(6)
    ]
    receipts = await devnet.activity.transactor.send_in_blocks([requests[:4], requests[4:]])
    blocks = [int(r["blockNumber"], 16) for r in receipts]
    assert blocks[:4] == [blocks[0]] * 4
    assert blocks[4:] == [blocks[0] + 1] * 2
    agent_ids = [int(r["logs"][0]["topics"][3], 16) for r in receipts]
    assert agent_ids == list(range(6))
    assert await devnet.rpc.call("anvil_getAutomine") is True
