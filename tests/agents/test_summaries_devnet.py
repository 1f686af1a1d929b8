"""The devnet contracts' spec views against the pure summaries, digit for digit.

Random feedback (decimals 0-18, negative and extreme values, empty and unicode tags) from many
impersonated clients, revocations, responses, validation requests and responses go to anvil;
the records are read back from the logs, as the read model reads them; then `eth_call` of
getSummary, readAllFeedback, getClients, getLastIndex, getResponseCount and the validation
getSummary, for random agents, client subsets and tags, must equal the pure functions (and,
for what they do not cover, a naive count of what was sent).
"""

from __future__ import annotations

import random

import pytest

from erc8004_backend.agents.summaries import (
    INT128_MAX,
    Validation,
    clients_by_first_feedback,
    read_all_feedback,
    reputation_summary,
    validation_summary,
)
from erc8004_backend.chain.rpc import RpcError
from erc8004_backend.devnet import Devnet
from erc8004_backend.devnet.contracts import REPUTATION, VALIDATION, decode_revert, load_artifact
from tests.support.devnet import decode, registry_logs
from tests.support.registry_activity import (
    TAGS1,
    TAGS2,
    VALIDATION_TAGS,
    ZERO,
    Chain,
    answer_validations,
    feedback_records,
    give_feedback,
    overflow_the_summary,
    random_address,
    request_validations,
    revoke_and_respond,
    setup_chain,
)


def expected_response_count(
    chain: Chain,
    order: dict[int, tuple[str, ...]],
    last: dict[tuple[int, str], int],
    agent_id: int,
    client: str,
    index: int,
    responders: list[str],
) -> int:
    """getResponseCount counted from what was sent: all clients (client zero), all of one
    client's feedback (index 0), or one feedback; from the listed responders (each listing
    counts) or from anyone."""
    if client == ZERO:
        feedback = [
            (c, i) for c in order.get(agent_id, ()) for i in range(1, last[agent_id, c] + 1)
        ]
    elif index == 0:
        feedback = [(client, i) for i in range(1, last.get((agent_id, client), 0) + 1)]
    else:
        feedback = [(client, index)]
    total = 0
    for (a, c, i, responder), count in chain.responses.items():
        if a == agent_id and (c, i) in feedback:
            total += count if not responders else count * responders.count(responder)
    return total


async def test_reputation_views_equal_the_pure_summaries(devnet: Devnet) -> None:
    rng = random.Random(8004)
    chain = await setup_chain(devnet, rng)
    await give_feedback(chain, rng)
    start = devnet.registries.block_number
    records = feedback_records(await registry_logs(devnet, start))
    await revoke_and_respond(chain, records, rng)
    await overflow_the_summary(chain)
    records = feedback_records(await registry_logs(devnet, start))  # now with revocations
    assert sum(f.revoked for items in records.values() for f in items) > 10
    order = {agent_id: clients_by_first_feedback(items) for agent_id, items in records.items()}
    last = {(a, f.client): f.index for a, items in records.items() for f in items}
    every_client = [*chain.clients, random_address(rng)]  # and one that never gave feedback

    # getClients: by first feedback, as read from the logs; getLastIndex of every pair.
    clients = await chain.views(REPUTATION, [("getClients", (a,)) for a in chain.agents])
    assert [[c.lower() for c in cs] for (cs,) in clients] == [
        list(order.get(a, ())) for a in chain.agents
    ]
    assert ZERO in {c for o in order.values() for c in o}  # the zero address is a client too
    pairs = [(a, c) for a in chain.agents for c in every_client]
    indexes = await chain.views(REPUTATION, [("getLastIndex", pair) for pair in pairs])
    assert [i for (i,) in indexes] == [last.get(pair, 0) for pair in pairs]

    # getSummary and readAllFeedback for random agents, client subsets and tags.
    summaries, reads = [], []
    for _ in range(300):
        agent_id = rng.choice(chain.agents)
        listed = rng.choices(every_client, k=rng.randint(1, 6))
        tag1 = rng.choice([*TAGS1, "absent"])
        tag2 = rng.choice([*TAGS2, "absent"]) if rng.random() < 0.3 else ""
        summaries.append((agent_id, listed, tag1, tag2))
        reads.append(
            (agent_id, listed if rng.random() < 0.6 else [], tag1, tag2, rng.random() < 0.5)
        )
    summaries.append((0, [chain.clients[0]], "overflow", ""))
    on_chain = await chain.views(REPUTATION, [("getSummary", s) for s in summaries])
    nonzero = 0
    for (agent_id, listed, tag1, tag2), answer in zip(summaries, on_chain, strict=True):
        expected = reputation_summary(records.get(agent_id, []), listed, tag1, tag2)
        assert answer == tuple(expected), (agent_id, listed, tag1, tag2)
        nonzero += expected.counted > 0
    assert nonzero > 100
    # INT128_MAX / 3 in 18 decimals does not fit in int128: both keep its low 128 bits.
    assert on_chain[-1] == (3, (INT128_MAX * 10**18 // 3 + 2**127) % 2**128 - 2**127, 18)

    on_chain = await chain.views(REPUTATION, [("readAllFeedback", r) for r in reads])
    for (agent_id, listed, tag1, tag2, revoked), answer in zip(reads, on_chain, strict=True):
        rows = read_all_feedback(
            records.get(agent_id, []), order.get(agent_id, ()), listed, tag1, tag2, revoked
        )
        columns = (
            [r.client for r in rows],
            [r.index for r in rows],
            [r.value for r in rows],
            [r.value_decimals for r in rows],
            [r.tag1 for r in rows],
            [r.tag2 for r in rows],
            [r.revoked for r in rows],
        )
        assert (
            [c.lower() for c in answer[0]],
            *(list(column) for column in answer[1:]),
        ) == columns

    # An empty client list: the contract reverts, the pure function refuses.
    data = load_artifact(REPUTATION).encode_call("getSummary", 0, [], "", "")
    with pytest.raises(RpcError) as reverted:
        await devnet.rpc.call("eth_call", [{"to": chain.address(REPUTATION), "data": data}])
    assert decode_revert(reverted.value.data) == "clientAddresses required"
    with pytest.raises(ValueError, match="clientAddresses required"):
        reputation_summary(records[0], [])

    # getResponseCount: all clients (zero), one client's feedback (index 0), one feedback.
    responded = list(chain.responses)
    questions = []
    for _ in range(150):
        agent_id, client, index, responder = rng.choice(responded)
        scope = rng.random()
        if scope < 0.2:
            client, index = ZERO, rng.randint(0, 3)
        elif scope < 0.4:
            index = 0
        elif scope < 0.5:
            agent_id, client, index = rng.choice(chain.agents), rng.choice(every_client), 1
        others = [r for (_, _, _, r) in responded] + [ZERO, random_address(rng)]
        responders = rng.choice([[], [responder], rng.choices([responder, *others], k=3)])
        questions.append((agent_id, client, index, responders))
    counts = await chain.views(REPUTATION, [("getResponseCount", q) for q in questions])
    for (agent_id, client, index, responders), (count,) in zip(questions, counts, strict=True):
        assert count == expected_response_count(
            chain, order, last, agent_id, client, index, responders
        ), (agent_id, client, index, responders)
    assert sum(count for (count,) in counts) > 100


async def test_validation_summary_equals_the_pure_one(devnet: Devnet) -> None:
    rng = random.Random(42)
    chain = await setup_chain(devnet, rng)
    validators = [random_address(rng) for _ in range(5)]
    for validator in validators:
        await chain.impersonate(validator)
    # The last agent gets no request.
    hashes = await request_validations(chain, rng, validators, 40, chain.agents[:-1])
    await answer_validations(chain, rng, hashes)

    # The records from the logs: each request with its latest response and tag.
    requested: dict[bytes, tuple[int, str]] = {}
    latest: dict[bytes, tuple[int | None, str]] = {}
    for entry in await registry_logs(devnet, devnet.registries.block_number):
        name, values = decode(entry)
        if name == "ValidationRequest":
            requested[values["requestHash"]] = (values["agentId"], values["validatorAddress"])
        elif name == "ValidationResponse":
            latest[values["requestHash"]] = (values["response"], values["tag"])
    records: dict[int, list[Validation]] = {}
    for request_hash, (agent_id, validator) in requested.items():
        answer, tag = latest.get(request_hash, (None, ""))
        records.setdefault(agent_id, []).append(Validation(validator.lower(), answer, tag))
    assert 0 < len(latest) < len(requested)

    listed = await chain.views(VALIDATION, [("getAgentValidations", (a,)) for a in chain.agents])
    assert [list(h) for (h,) in listed] == [
        [h for h, (a, _) in requested.items() if a == agent_id] for agent_id in chain.agents
    ]

    queries = []
    for _ in range(200):
        agent_id = rng.choice(chain.agents)
        chosen = rng.choice(
            [[], rng.choices([*validators, random_address(rng)], k=rng.randint(1, 4))]
        )
        queries.append((agent_id, chosen, rng.choice([*VALIDATION_TAGS, "absent"])))
    answers = await chain.views(VALIDATION, [("getSummary", q) for q in queries])
    counted = 0
    for (agent_id, chosen, tag), answer in zip(queries, answers, strict=True):
        expected = validation_summary(records.get(agent_id, []), chosen, tag)
        assert answer == tuple(expected), (agent_id, chosen, tag)
        counted += expected.counted > 0
    assert counted > 50


async def test_the_zero_address_as_first_and_as_newest_client(devnet: Devnet) -> None:
    """The contract anchors an agent's clients at the newest one, zero when there is none: the
    zero address as a client (anvil impersonates it) must not read as no clients."""
    chain = await setup_chain(devnet, random.Random(1))
    a, b = chain.clients[:2]

    async def feedback_then_clients(client: str, agent_id: int) -> list[str]:
        item = (agent_id, -7, 1, "", "", "", "", b"\x00" * 32)
        await chain.send([chain.tx(client, REPUTATION, "giveFeedback", *item)])
        ((clients,),) = await chain.views(REPUTATION, [("getClients", (agent_id,))])
        return [c.lower() for c in clients]

    assert await chain.views(REPUTATION, [("getClients", (5,))]) == [((),)]
    assert await feedback_then_clients(ZERO, 5) == [ZERO]
    assert await feedback_then_clients(a, 5) == [ZERO, a]
    assert await feedback_then_clients(ZERO, 5) == [ZERO, a]
    assert await feedback_then_clients(a, 4) == [a]
    assert await feedback_then_clients(ZERO, 4) == [a, ZERO]
    assert await feedback_then_clients(b, 4) == [a, ZERO, b]
    summaries = await chain.views(REPUTATION, [("getSummary", (5, [ZERO, a, b], "", ""))])
    assert summaries == [(3, -7, 1)]
