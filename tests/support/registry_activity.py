"""Random ERC-8004 activity sent to a devnet through the registries' own functions, with a
record of what was sent: for tests that compare what the registries' view functions answer
(eth_call) with the pure summaries, the read model or the API::

    chain = await setup_chain(devnet, rng)    # agents 0-5 of three owners, 16 clients
    await give_feedback(chain, rng)           # decimals 0-18, extreme values, unicode tags
    await revoke_and_respond(chain, feedback_records(await registry_logs(devnet)), rng)
    await answer_validations(chain, rng, await request_validations(chain, rng, validators))
    await transfer_agents(chain, rng)         # to owners, newcomers, themselves; by operators
    await change_identities(chain, rng)       # wallets unset, URIs, metadata, new agents

Every address the activity sends from is impersonated on anvil (the zero address too), so
any address can be a client, a responder, a validator or an owner.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from erc8004_backend.agents.summaries import INT128_MAX, INT128_MIN, Feedback
from erc8004_backend.devnet import Devnet, Transactor, TxRequest
from erc8004_backend.devnet.contracts import IDENTITY, REPUTATION, VALIDATION, load_artifact
from tests.support.devnet import decode

ZERO = "0x" + "00" * 20
TAGS1 = ["", "", "starred", "uptime", "信頼性", "🚀 rápido", "x" * 40]
TAGS2 = ["", "", "day", "ünïcødé", "✓"]
VALIDATION_TAGS = ["", "zkml", "tee", "✓ ok", "信頼"]
# Tags a store or a URL could confuse with the ones above or with none: another case, a
# trailing space, a space alone, "café" composed (NFC) and decomposed (NFD), characters that
# mean something in a query string. The contracts compare the bytes.
CONFUSABLE_TAGS1 = ["Uptime", "uptime ", " ", "caf\u00e9", "cafe\u0301", "5% & more+=#?"]
CONFUSABLE_TAGS2 = ["DAY", "day ", " "]
CONFUSABLE_VALIDATION_TAGS = ["ZKML", "zkml ", " "]
METADATA_KEYS = ["color", "Color", "信頼", "", "k" * 40]
GAS = 20_000_000


def random_value(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.5:
        return rng.randint(-100, 100)
    if roll < 0.7:
        return rng.choice([INT128_MIN, INT128_MIN + 1, -1, 0, 1, INT128_MAX - 1, INT128_MAX])
    if roll < 0.85:
        return rng.choice([-1, 1]) * int(10 ** rng.randint(0, 38))
    return rng.randint(INT128_MIN, INT128_MAX)


def random_decimals(rng: random.Random) -> int:
    return rng.choice([0, 0, 2, 2, 18, rng.randint(0, 18)])


def random_address(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


@dataclass
class Chain:
    """The devnet and what the test sent to it."""

    net: Devnet
    transactor: Transactor
    owners: list[str]
    agents: list[int]
    owner_of: dict[int, str] = field(default_factory=dict)  # as the last transfer left it
    clients: list[str] = field(default_factory=list)
    # (agent, client, index, responder): how many responses were appended.
    responses: Counter[tuple[int, str, int, str]] = field(default_factory=Counter)
    metadata_keys: dict[int, set[str]] = field(default_factory=dict)  # keys set, per agent
    newcomers: list[str] = field(default_factory=list)  # owners by transfer or registration
    # None: each transaction in a block of its own (anvil's automine). Dice: send() mines a
    # few transactions to a block, many senders' together, as on a real chain.
    mine_together: random.Random | None = None

    def address(self, name: str) -> str:
        return {
            IDENTITY: self.net.registries.identity,
            REPUTATION: self.net.registries.reputation,
            VALIDATION: self.net.registries.validation,
        }[name]

    def tx(self, sender: str, name: str, function: str, *args: Any) -> TxRequest:
        data = load_artifact(name).encode_call(function, *args)
        return TxRequest(sender, self.address(name), data, GAS, function)

    async def send(self, requests: list[TxRequest]) -> None:
        """Mined in the order given (one sender's, at least), each reverting one an error."""
        if self.mine_together is None:
            await self.transactor.send_all(requests)
            return
        blocks, rest = [], list(requests)
        while rest:
            size = self.mine_together.randint(1, 8)
            blocks.append(rest[:size])
            rest = rest[size:]
        await self.transactor.send_in_blocks(blocks)

    async def impersonate(self, address: str) -> None:
        await self.net.rpc.call("anvil_impersonateAccount", [address])
        await self.net.rpc.call("anvil_setBalance", [address, hex(10**21)])

    async def newcomer(self, rng: random.Random) -> str:
        """A new impersonated address, to own agents."""
        address = random_address(rng)
        await self.impersonate(address)
        self.newcomers.append(address)
        return address

    async def views(self, name: str, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """eth_call of each (function, arguments), decoded; in batches."""
        artifact = load_artifact(name)
        results: list[Any] = []
        for start in range(0, len(calls), 50):
            chunk = calls[start : start + 50]
            raw = await self.net.rpc.batch(
                [
                    (
                        "eth_call",
                        [{"to": self.address(name), "data": artifact.encode_call(f, *a)}, "latest"],
                    )
                    for f, a in chunk
                ]
            )
            for (function, _), data in zip(chunk, raw, strict=True):
                results.append(artifact.function(function).decode_output(data))
        return results


async def setup_chain(net: Devnet, rng: random.Random) -> Chain:
    """Agents 0-5, two of each of three owners (0 and 1 the first's, ...), and 16 impersonated
    clients: 14 random addresses, the first owner and the zero address."""
    accounts = [a.lower() for a in await net.rpc.call("eth_accounts")]
    owners = accounts[1:4]
    # The devnet mines each transaction as it comes: a receipt missing for a minute is a
    # transaction that will never be mined, named well before the test's own timeout.
    chain = Chain(net, Transactor(net.rpc, receipt_timeout=60), owners, agents=list(range(6)))
    chain.owner_of = {agent_id: owners[agent_id // 2] for agent_id in chain.agents}
    uris = [f"https://agents.example/{i}.json" for i in range(2)]
    for owner in owners:  # one after the other, for the ids above
        await chain.send([chain.tx(owner, IDENTITY, "registerBatch", uris)])
    chain.clients = [random_address(rng) for _ in range(14)] + [owners[0], ZERO]
    for client in chain.clients:
        await chain.impersonate(client)
    return chain


async def give_feedback(
    chain: Chain,
    rng: random.Random,
    rounds: int = 3,
    tags1: list[str] = TAGS1,
    tags2: list[str] = TAGS2,
) -> None:
    """`rounds` rounds, the clients in a new order each, so that first feedback interleaves;
    batches and single calls, to any of the chain's agents, tagged from `tags1` and `tags2`."""
    for _ in range(rounds):
        requests = []
        for client in rng.sample(chain.clients, len(chain.clients)):
            items = [
                (
                    rng.choice(chain.agents),
                    random_value(rng),
                    random_decimals(rng),
                    rng.choice(tags1),
                    rng.choice(tags2),
                    "https://agents.example/endpoint",
                    "",
                    b"\x00" * 32,
                )
                for _ in range(rng.randint(1, 5))
            ]
            if len(items) == 1:
                requests.append(chain.tx(client, REPUTATION, "giveFeedback", *items[0]))
            else:
                requests.append(chain.tx(client, REPUTATION, "giveFeedbackBatch", items))
        await chain.send(requests)


async def overflow_the_summary(chain: Chain) -> None:
    """Feedback to agent 0 whose summary leaves int128: INT128_MAX (0 decimals) and twice 0
    (18 decimals), tagged "overflow", average INT128_MAX / 3 in 18 decimals."""
    items = [
        (0, INT128_MAX, 0, "overflow", "", "", "", b"\x00" * 32),
        (0, 0, 18, "overflow", "", "", "", b"\x00" * 32),
        (0, 0, 18, "overflow", "", "", "", b"\x00" * 32),
    ]
    await chain.send([chain.tx(chain.clients[0], REPUTATION, "giveFeedbackBatch", items)])


def feedback_records(logs: list[dict[str, Any]]) -> dict[int, list[Feedback]]:
    """Each agent's feedback in chain order, revocations applied, from the registry's logs."""
    by_key: dict[tuple[int, str, int], Feedback] = {}
    for entry in logs:
        name, values = decode(entry)
        if name == "NewFeedback":
            key = (values["agentId"], values["clientAddress"].lower(), values["feedbackIndex"])
            by_key[key] = Feedback(
                key[1],
                key[2],
                values["value"],
                values["valueDecimals"],
                values["tag1"],
                values["tag2"],
            )
        elif name == "FeedbackRevoked":
            key = (values["agentId"], values["clientAddress"].lower(), values["feedbackIndex"])
            by_key[key] = replace(by_key[key], revoked=True)
    records: dict[int, list[Feedback]] = {}
    for (agent_id, _, _), record in by_key.items():  # dicts keep the first insertion's place
        records.setdefault(agent_id, []).append(record)
    return records


async def revoke_and_respond(
    chain: Chain, records: dict[int, list[Feedback]], rng: random.Random
) -> None:
    """A quarter of the `records` (not revoked yet) revoked by their clients; 40 rounds of
    responses (some appended two or three times) by owners, strangers and a client, counted
    in `chain.responses`."""
    everything = [(agent_id, f) for agent_id, items in records.items() for f in items]
    by_client: dict[str, list[tuple[int, int]]] = {}
    for agent_id, f in rng.sample(everything, len(everything) // 4):
        by_client.setdefault(f.client, []).append((agent_id, f.index))
    await chain.send(
        [
            chain.tx(
                client, REPUTATION, "revokeFeedbackBatch", *map(list, zip(*pairs, strict=True))
            )
            for client, pairs in by_client.items()
        ]
    )
    strangers = [random_address(rng) for _ in range(3)]
    for stranger in strangers:
        await chain.impersonate(stranger)
    responders = [*chain.owners, *strangers, chain.clients[1]]
    requests = []
    for _ in range(40):
        agent_id, f = rng.choice(everything)
        responder = rng.choice(responders)
        times = rng.choice([1, 1, 1, 2, 3])
        chain.responses[(agent_id, f.client, f.index, responder)] += times
        item = (agent_id, f.client, f.index, rng.choice(["", "ipfs://response"]), b"\x01" * 32)
        if times == 1:
            requests.append(chain.tx(responder, REPUTATION, "appendResponse", *item))
        else:
            requests.append(chain.tx(responder, REPUTATION, "appendResponseBatch", [item] * times))
    await chain.send(requests)


async def request_validations(
    chain: Chain,
    rng: random.Random,
    validators: list[str],
    count: int = 40,
    agents: list[int] | None = None,
) -> list[tuple[bytes, str]]:
    """`count` validation requests, each by the agent's current owner for a random one of
    `agents` (default: all) to a random one of the (impersonated) `validators`; their
    (request hash, validator)."""
    requests, hashes = [], []
    for _ in range(count):
        agent_id = rng.choice(agents if agents is not None else chain.agents)
        validator = rng.choice(validators)
        request_hash = rng.randbytes(32)
        hashes.append((request_hash, validator))
        requests.append(
            chain.tx(
                chain.owner_of[agent_id],
                VALIDATION,
                "validationRequest",
                validator,
                agent_id,
                "https://validation.example/request",
                request_hash,
            )
        )
    await chain.send(requests)
    return hashes


async def answer_validations(
    chain: Chain,
    rng: random.Random,
    hashes: list[tuple[bytes, str]],
    tags: list[str] = VALIDATION_TAGS,
) -> None:
    """Each request left unanswered, answered, or answered again (0, 100 or any response,
    with a tag from `tags`), by its validator."""
    responses = []
    for request_hash, validator in hashes:
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            response = rng.choice([0, 100, rng.randint(0, 100)])
            tag = rng.choice(tags)
            responses.append(
                chain.tx(
                    validator,
                    VALIDATION,
                    "validationResponse",
                    request_hash,
                    response,
                    "",
                    b"\x00" * 32,
                    tag,
                )
            )
    await chain.send(responses)


def every_kind(rng: random.Random, kinds: list[str], count: int) -> list[str]:
    """`count` kinds in a random order, each of `kinds` at least once when `count` allows."""
    chosen = kinds[:count] + rng.choices(kinds, k=max(0, count - len(kinds)))
    return rng.sample(chosen, len(chosen))


async def transfer_agents(chain: Chain, rng: random.Random, count: int = 4) -> None:
    """`count` agents change hands: to another owner, to a newcomer, or to their own owner (a
    self-transfer keeps the agent wallet; any other clears it); by the owner (transferFrom,
    safeTransferFrom) or by an operator the owner approved for that agent. Each kind of
    recipient happens when `count` is 3 or more."""
    approvals, transfers = [], []
    agents = rng.sample(chain.agents, min(count, len(chain.agents)))
    recipients = every_kind(rng, ["owner", "newcomer", "self"], len(agents))
    for agent_id, recipient in zip(agents, recipients, strict=True):
        owner = chain.owner_of[agent_id]
        if recipient == "owner":
            to = rng.choice([o for o in [*chain.owners, *chain.newcomers] if o != owner])
        elif recipient == "newcomer":
            to = await chain.newcomer(rng)
        else:
            to = owner
        way = rng.choice(["transferFrom", "safeTransferFrom(address,address,uint256)", "operator"])
        if way == "operator":
            operator = rng.choice([o for o in chain.owners if o != owner])
            approvals.append(chain.tx(owner, IDENTITY, "approve", operator, agent_id))
            transfers.append(chain.tx(operator, IDENTITY, "transferFrom", owner, to, agent_id))
        else:
            transfers.append(chain.tx(owner, IDENTITY, way, owner, to, agent_id))
        chain.owner_of[agent_id] = to
    await chain.send(approvals)
    await chain.send(transfers)


async def change_identities(chain: Chain, rng: random.Random) -> None:
    """Agent wallets unset, URIs changed (to unicode or empty ones), metadata set (empty and
    unicode keys, empty values) by the agents' owners; then three new agents: without a URI,
    with one, and with metadata, by a newcomer or an owner."""
    requests = []
    changes = every_kind(rng, ["wallet", "uri", "metadata", "none"], len(chain.agents))
    for agent_id, change in zip(chain.agents, changes, strict=True):
        owner = chain.owner_of[agent_id]
        if change == "wallet":
            requests.append(chain.tx(owner, IDENTITY, "unsetAgentWallet", agent_id))
        elif change == "uri":
            uri = rng.choice(["", f"ipfs://agent-{agent_id}-v{rng.randint(2, 9)}",
                              "https://agents.example/über/信頼.json"])  # fmt: skip
            requests.append(chain.tx(owner, IDENTITY, "setAgentURI", agent_id, uri))
        elif change == "metadata":
            key = rng.choice(METADATA_KEYS)
            value = rng.randbytes(rng.choice([0, 1, 20, 33]))
            requests.append(chain.tx(owner, IDENTITY, "setMetadata", agent_id, key, value))
            chain.metadata_keys.setdefault(agent_id, set()).add(key)
    await chain.send(requests)
    (total,) = (await chain.views(IDENTITY, [("totalAgents", ())]))[0]
    owner = rng.choice([await chain.newcomer(rng), rng.choice(chain.owners)])
    entries = [(key, rng.randbytes(rng.choice([0, 4]))) for key in rng.sample(METADATA_KEYS, 2)]
    await chain.send([chain.tx(owner, IDENTITY, "register()")])
    await chain.send([chain.tx(owner, IDENTITY, "register(string)", "data:application/json,{}")])
    await chain.send([chain.tx(owner, IDENTITY, "register(string,(string,bytes)[])",
                               "https://agents.example/new.json", entries)])  # fmt: skip
    for agent_id in range(total, total + 3):
        chain.agents.append(agent_id)
        chain.owner_of[agent_id] = owner
    chain.metadata_keys[total + 2] = {key for key, _ in entries}
