"""The seven example triggers of trigger-examples.md under `erc8004 run`, end to end through
all three channels: a scripted scene on the devnet (with random background activity) is
indexed, evaluated and delivered to a Telegram-protocol server, a webhook sink and the
agent's own MCP server; what arrives is checked against what the chain emitted, read back
with eth_getLogs and decoded with eth-abi, independently of the product.

The examples are adapted to the devnet: chain 31337; agent 42 is an agent registered here,
whose on-chain data: registration file names the local MCP server; the REST URL is the
sink's; the validator whitelist is two devnet accounts (written in upper case: addresses
compare ignoring case). Block times are set, so that the rate window sees the minutes the
example speaks of.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey

from erc8004_backend.api.tokens import token_sha256
from erc8004_backend.chain.signatures import personal_sign
from erc8004_backend.devnet import ActivityGenerator, Devnet
from erc8004_backend.devnet.activity.scripted import ScriptedTransaction
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import TelegramServer, WebhookSink, unescape_markdown_v2
from tests.support.devnet import decode, registry_logs
from tests.support.mcp_agent import McpAgentServer
from tests.support.system import System, running_system
from tests.support.waiting import eventually
from tests.triggers.test_examples_end_to_end import example_triggers

CHAIN = 31337
BOT_TOKEN = "4242:e2e-bot-token"
MCP_TOKEN = "agent-mcp-token-e2e"
CHAT_REPUTATION, CHAT_OTHERS = "123456789", "987654321"
# anvil's well-known development keys of accounts 3 and 4 ("test test ... junk").
OWNER_KEY = PrivateKey(
    bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")
)
STRANGER_KEY = PrivateKey(
    bytes.fromhex("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a")
)
ALPHA = 2 / 11  # window_size 10
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


# -- the other end of the channels ------------------------------------------------------------


@dataclass
class FileServer:
    """Static files over HTTP (feedback files, a registration file); counts the requests."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    base_url: str = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests[scope["path"]] += 1
        body = self.files.get(scope["path"])
        status = 200 if body is not None else 404
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body or b"{}"})


def data_uri(document: Any) -> str:
    raw = json.dumps(document, ensure_ascii=False).encode()
    return "data:application/json;base64," + base64.b64encode(raw).decode()


# -- the chain's account, decoded independently -------------------------------------------------


@dataclass(frozen=True)
class ChainEvent:
    """A registry event as eth-abi decodes it from eth_getLogs, with its block's time."""

    name: str
    values: dict[str, Any]
    block: int
    log_index: int
    tx: str
    time: int

    @property
    def agent(self) -> int:
        return int(self.values.get("agentId", self.values.get("tokenId", -1)))

    @property
    def score(self) -> Decimal:
        return Decimal(self.values["value"]).scaleb(-self.values["valueDecimals"])

    def fields(self) -> dict[str, str]:
        """The template fields of trigger-examples.md, as text, from the chain's values."""
        v = self.values
        fields = {"agent_id": str(self.agent), "block_number": str(self.block),
                  "transaction_hash": self.tx, "log_index": str(self.log_index)}  # fmt: skip
        if self.name == "NewFeedback":
            fields |= {
                "client_address": v["clientAddress"].lower(), "score": number(self.score),
                "value": str(v["value"]), "value_decimals": str(v["valueDecimals"]),
                "feedback_index": str(v["feedbackIndex"]), "tag1": v["tag1"], "tag2": v["tag2"],
                "endpoint": v["endpoint"], "file_uri": v["feedbackURI"],
                "file_hash": "0x" + v["feedbackHash"].hex(),
            }  # fmt: skip
        elif self.name == "Registered":
            fields |= {"owner": v["owner"].lower(), "token_uri": v["agentURI"]}
        elif self.name == "ValidationResponse":
            fields |= {"validator_address": v["validatorAddress"].lower(),
                       "response": str(v["response"]), "tag": v["tag"]}  # fmt: skip
        return fields


def number(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def render(template: str, fields: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda match: fields.get(match.group(1), ""), template)


async def chain_events(devnet: Devnet, after_block: int) -> list[ChainEvent]:
    """Every registry event after `after_block`, in chain order (eth_getLogs is)."""
    logs = await registry_logs(devnet, after_block + 1)
    numbers = sorted({int(entry["blockNumber"], 16) for entry in logs})
    headers = await devnet.rpc.get_block_headers(numbers)
    times = {int(h["number"], 16): int(h["timestamp"], 16) for h in headers}
    events = []
    for entry in logs:
        name, values = decode(entry)
        block = int(entry["blockNumber"], 16)
        events.append(ChainEvent(name, values, block, int(entry["logIndex"], 16),
                                 entry["transactionHash"].lower(), times[block]))  # fmt: skip
    return events


# -- what the seven examples should send, evaluated on the chain's events ------------------------


@dataclass
class Expected:
    telegram: list[tuple[str, str]] = field(default_factory=list)  # (chat id, plain text)
    webhooks: list[tuple[ChainEvent, dict[str, str]]] = field(default_factory=list)
    mcp: list[ChainEvent] = field(default_factory=list)
    fired: dict[int, list[str]] = field(  # example number -> transaction hashes, in order
        default_factory=lambda: {number: [] for number in range(1, 8)}
    )
    spam_counts: list[int] = field(default_factory=list)  # {{count}} of each firing of 6

    @property
    def deliveries(self) -> int:
        return len(self.telegram) + len(self.webhooks) + len(self.mcp)


def expected_deliveries(
    examples: list[dict[str, Any]], events: Iterable[ChainEvent], agent: int,
    validators: set[str],
) -> Expected:  # fmt: skip
    """Each example's conditions written out by hand over the decoded events (the
    semantics of trigger-examples.md), with its templates rendered from the chain's values."""
    templates = [[a["config"] for a in example["actions"]] for example in examples]
    out = Expected()
    ema: float | None = None
    window: list[int] = []
    for event in events:
        fields = event.fields()
        feedback = event.name == "NewFeedback"
        ours = feedback and event.agent == agent
        if ours and event.score < 60:  # 1. low score
            out.fired[1].append(event.tx)
            out.telegram.append((CHAT_REPUTATION, render(templates[0][0]["message_template"],
                                                         fields)))  # fmt: skip
        if event.name == "Registered":  # 2. registrations
            out.fired[2].append(event.tx)
            out.telegram.append((CHAT_OTHERS, render(templates[1][0]["message_template"],
                                                     fields)))  # fmt: skip
        if ours and event.values["tag1"] == "refund":  # 3. refunds: telegram and webhook
            out.fired[3].append(event.tx)
            out.telegram.append((CHAT_REPUTATION, render(templates[2][0]["message_template"],
                                                         fields)))  # fmt: skip
            body = {key: render(value, fields)
                    for key, value in templates[2][1]["body_template"].items()}  # fmt: skip
            out.webhooks.append((event, body))
        if (  # 4. trusted validators failing an agent
            event.name == "ValidationResponse"
            and fields["validator_address"] in validators
            and event.values["response"] < 80
        ):
            out.fired[4].append(event.tx)
            out.telegram.append((CHAT_OTHERS, render(templates[3][0]["message_template"],
                                                     fields)))  # fmt: skip
        if ours:  # 5. the EMA of agent 42's scores, seeded by the first
            score = float(event.score)
            ema = score if ema is None else ALPHA * score + (1 - ALPHA) * ema
            if ema < 70:
                text = render(templates[4][0]["message_template"],
                              {**fields, "ema_score": repr(round(ema, 6))})  # fmt: skip
                out.telegram.append((CHAT_REPUTATION, text))
                out.fired[5].append(event.tx)
        if ours and event.score < 50:  # 6. more than 10 in an hour of block time, then reset
            window = [t for t in window if t > event.time - 3600] + [event.time]
            if len(window) > 10:
                text = render(templates[5][0]["message_template"],
                              {**fields, "count": str(len(window))})  # fmt: skip
                out.telegram.append((CHAT_REPUTATION, text))
                out.fired[6].append(event.tx)
                out.spam_counts.append(len(window))
                window = []
        if ours and event.values["feedbackURI"]:  # 7. feedback with a file, to the MCP server
            out.fired[7].append(event.tx)
            out.mcp.append(event)
    return out


def comparable(text: str) -> str:
    """EMA values to 4 places: the engine's float may differ in the last bits from ours."""
    return re.sub(r"average fell to (-?[0-9.e+-]+)",
                  lambda m: f"average fell to {float(m.group(1)):.4f}", text)  # fmt: skip


# -- the scene ---------------------------------------------------------------------------------


@dataclass
class Scene:
    """Scripted transactions at chosen block times, each kept under a label."""

    devnet: Devnet
    files: FileServer
    sent: dict[str, list[str]] = field(default_factory=dict)  # label -> transaction hashes
    _clock: int = 0

    async def at(self, seconds: int) -> None:
        """The next block's time: `seconds` after the scene's clock was last set."""
        await self.devnet.rpc.call("evm_setNextBlockTimestamp", [self._clock + seconds])

    async def restart_clock(self, hours: int) -> None:
        """The clock `hours` after the latest block (and the next block then)."""
        latest = await self.devnet.rpc.call("eth_getBlockByNumber", ["latest", False])
        self._clock = int(latest["timestamp"], 16) + hours * 3600
        await self.at(0)

    def record(self, label: str, sent: ScriptedTransaction) -> str:
        """A scripted action's transaction (of one event), kept under `label`."""
        assert sent.report.events == 1
        self.sent.setdefault(label, []).append(sent.transaction_hash)
        return sent.transaction_hash

    async def feedback(self, label: str, agent: int, value: int, **options: Any) -> str:
        return self.record(label, await self.devnet.activity.give_feedback(agent, value, **options))

    async def validation(
        self, label: str, agent: int, validator: str, responses: list[tuple[int, str]]
    ) -> None:
        """A request to `validator`, then its (response, tag) answers, kept under `label`."""
        request = await self.devnet.activity.request_validation(
            agent, validator, request_uri=f"https://validation.example/{label}.json"
        )
        for response, tag in responses:
            answer = await self.devnet.activity.respond_validation(
                request.request_hash, response, tag=tag
            )
            self.record(label, answer)

    def file(self, name: str, document: Any, *, over_http: bool) -> dict[str, Any]:
        """A feedback file, served over HTTP or as a data: URI, with its keccak256."""
        raw = json.dumps(document, ensure_ascii=False).encode()
        if over_http:
            self.files.files[f"/feedback/{name}.json"] = raw
            uri = self.files.url(f"/feedback/{name}.json")
        else:
            uri = "data:application/json;base64," + base64.b64encode(raw).decode()
        return {"file_uri": uri, "file_hash": keccak(raw)}


def adapted_examples(
    agent: int, sink_url: str, validators: tuple[str, str]
) -> list[dict[str, Any]]:
    examples = example_triggers()
    for body in examples:
        body["chain_id"] = CHAIN
        for condition in body["conditions"]:
            if condition["condition_type"] == "agent_id_equals":
                condition["value"] = str(agent)
            if condition["condition_type"] == "validator_whitelist":
                condition["value"] = json.dumps([v.upper().replace("0X", "0x") for v in validators])
        for action in body["actions"]:
            if action["action_type"] == "rest":
                action["config"]["url"] = f"{sink_url}/refund-alerts"
    return examples


INDEXED = {"Registered", "URIUpdated", "MetadataSet", "Transfer", "NewFeedback",
           "FeedbackRevoked", "ResponseAppended", "ValidationRequest", "ValidationResponse"}  # fmt: skip


async def processed_up_to_head(database_url: str, devnet: Devnet) -> None:
    """Until the processor has evaluated every event up to the chain's head (read from the
    database: the moment to create a trigger that must not see what came before)."""
    head = await devnet.rpc.block_number()
    logs = [entry for entry in await registry_logs(devnet) if decode(entry)[0] in INDEXED]
    last = (int(logs[-1]["blockNumber"], 16), int(logs[-1]["logIndex"], 16)) if logs else (0, 0)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:

        async def reached() -> bool:
            checkpoint = await (await conn.execute(
                "SELECT confirmed_block_number FROM checkpoints WHERE chain_id = %s", [CHAIN]
            )).fetchone()  # fmt: skip
            cursor = await (await conn.execute(
                "SELECT block_number, log_index FROM processing_cursors WHERE chain_id = %s",
                [CHAIN],
            )).fetchone()  # fmt: skip
            return bool(
                checkpoint
                and checkpoint[0] is not None
                and checkpoint[0] >= head
                and (not logs or (cursor is not None and tuple(cursor) >= last))
            )

        await eventually(reached, 20, what=f"the processor reaching block {head}")


async def registration_fetched(database_url: str, agent: int) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:

        async def resolved() -> tuple[str, str | None] | None:
            row = await (await conn.execute(
                "SELECT status, error FROM agent_registrations WHERE chain_id = %s AND agent_id = %s",
                [CHAIN, agent],
            )).fetchone()  # fmt: skip
            return (row[0], row[1]) if row and row[0] != "pending" else None

        status, error = await eventually(resolved, 10, what=f"agent {agent}'s registration file")
    assert status == "fetched", error


async def set_mcp_token(system: System, agent: int, key: PrivateKey) -> int:
    """A challenge for the token, signed by `key`, then the PUT: its status."""
    path = f"/agents/{CHAIN}/{agent}/mcp-token"
    asked = await system.client.post(
        f"{path}/challenge", headers=system.headers,
        json={"action": "set", "token_sha256": token_sha256(MCP_TOKEN)},
    )  # fmt: skip
    assert asked.status_code == 201, asked.text
    challenge = asked.json()
    body = {"token": MCP_TOKEN, "signature": personal_sign(key, challenge["message"]),
            "nonce": challenge["nonce"]}  # fmt: skip
    response = await system.client.put(path, json=body, headers=system.headers)
    return response.status_code


# -- the test ------------------------------------------------------------------------------------


async def test_the_seven_examples_deliver_exactly_what_the_chain_says(
    devnet: Devnet, database_url: str, tmp_path: Path
) -> None:
    accounts = devnet.activity.accounts
    owner, other_owner = accounts[3], accounts[4]
    assert "0x" + OWNER_KEY.public_key.to_canonical_address().hex() == owner
    assert "0x" + STRANGER_KEY.public_key.to_canonical_address().hex() == other_owner
    clients = [accounts[1], accounts[2], accounts[5], accounts[6]]
    validators = (accounts[7], accounts[8])
    outsider_validator = accounts[9]
    # Random activity of its own agents, sharing the scripted generator's nonces.
    background = ActivityGenerator(devnet.rpc, devnet.registries, seed=8004,
                                   transactor=devnet.activity.transactor)  # fmt: skip
    await background.setup()
    telegram = TelegramServer(token=BOT_TOKEN)
    sink = WebhookSink(secret="")
    files = FileServer()
    async with (
        serve_asgi(telegram) as telegram_url,
        serve_asgi(sink) as sink_url,
        serve_asgi(files) as files.base_url,
        McpAgentServer(token=MCP_TOKEN) as mcp,
        running_system(
            devnet, database_url, tmp_path,
            ERC8004_TELEGRAM_API_URL=telegram_url, ERC8004_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
            ERC8004_TELEGRAM_RATE_LIMITS="false",
            ERC8004_IPFS_GATEWAY="http://127.0.0.1:9/ipfs/",  # nothing leaves the machine
        ) as system,
    ):  # fmt: skip
        # Before the triggers: activity they must never see.
        await background.run(events=40)
        await processed_up_to_head(database_url, devnet)
        agent = len(background.agent_ids)  # ids are sequential: the next two are ours
        other = agent + 1
        boundary = await devnet.rpc.block_number()

        examples = adapted_examples(agent, sink_url, validators)
        for body in examples:
            created = await system.client.post("/triggers", json=body, headers=system.headers)
            assert created.status_code == 201, created.text
            if body["name"] == "Refund requests":
                sink.secret = created.json()["webhook_secret"]
        assert sink.secret
        # The processor takes the triggers in on their notification, before the scene.
        await eventually(lambda: any(entry["triggers"] == len(examples) for entry
                                     in system.logged("processor.triggers_loaded")),
                         what="the processor loading the triggers")  # fmt: skip

        scene = Scene(devnet, files)
        registration = {
            "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
            "name": "End-to-end agent",
            "services": [{"name": "MCP", "endpoint": mcp.url, "version": "2025-06-18"},
                         {"name": "A2A", "endpoint": "https://a2a.devnet.example/card.json"}],
        }  # fmt: skip
        registered = await devnet.activity.register_agent(data_uri(registration), owner=owner)
        assert registered.agent_id == agent
        files.files["/agents/other.json"] = json.dumps({"name": "other", "services": []}).encode()
        other_uri = files.url("/agents/other.json")
        registered = await devnet.activity.register_agent(other_uri, owner=other_owner)
        assert registered.agent_id == other

        # The MCP token: refused with another key's signature, set with the owner's.
        await eventually(lambda: _indexed_owner(system, agent), what=f"agent {agent} indexed")
        assert await set_mcp_token(system, agent, STRANGER_KEY) == 403
        assert await set_mcp_token(system, agent, OWNER_KEY) == 201
        await registration_fetched(database_url, agent)

        # 5. EMA: 90, 90, 90 then ten 40s, a minute apart (fixed-point values among them).
        await scene.restart_clock(hours=1)
        for i, (value, decimals) in enumerate(
            [(90, 0), (9000, 2), (90, 0)] + [(40, 0), (400, 1)] * 5
        ):
            await scene.at(60 * i)
            await scene.feedback("ema", agent, value, decimals=decimals, client=clients[i % 4],
                                 tag1="starred" if value % 9 == 0 else "quality",
                                 tag2="ünïcødé_✓ [day]")  # fmt: skip

        # 1, 3, 7 and their near misses, two hours later (the spam window is empty again).
        await scene.restart_clock(hours=2)
        await scene.feedback("low", agent, 455, decimals=1, tag1="quality", tag2="a_b*c",
                             client=clients[0], endpoint="https://agent.example/mcp")  # fmt: skip
        await scene.at(60)
        await scene.feedback("not low: 60", agent, 60, tag1="quality", client=clients[1])
        await scene.at(120)
        await scene.feedback("not ours", other, 10, tag1="refund", client=clients[2],
                             **scene.file("other", {"note": "other agent"}, over_http=True))  # fmt: skip
        await scene.at(180)
        refund_file = scene.file("refund", {"reason": "wrong answer", "amount": "12.5 USDC"},
                                 over_http=False)  # fmt: skip
        await scene.feedback("refund", agent, -100, tag1="refund", tag2="api",
                             client=clients[2], **refund_file)  # fmt: skip
        await scene.at(240)
        await scene.feedback("refund in tag2", agent, 95, tag1="starred", tag2="refund",
                             client=clients[3])  # fmt: skip
        await scene.at(270)
        await scene.feedback("refund, no file", agent, -25, decimals=1, tag1="refund",
                             client=clients[1])  # fmt: skip
        await scene.at(300)
        await scene.feedback("with a file", agent, 9750, decimals=2, tag1="successRate",
                             client=clients[3], **scene.file("great", {"score": 97.5, "comment":
                             "fast ✓"}, over_http=True))  # fmt: skip
        await scene.at(360)
        await scene.feedback("not ours, wrong hash", other, 99, client=clients[0], file_uri=other_uri,
                             file_hash=b"\x01" * 32)  # fmt: skip

        # 4. Validations: requests never fire; responses below 80 from a listed validator do.
        await scene.at(420)
        await scene.validation("listed: 50", agent, validators[0], [(50, "soft-finality")])
        await scene.validation("listed: 80", agent, validators[1], [(80, "zkml")])
        await scene.validation("listed: 80 then 79", agent, validators[1],
                               [(80, "zkml"), (79, "zkml ✓")])  # fmt: skip
        await scene.validation("not listed", other, outsider_validator, [(10, "tee")])
        await scene.validation("listed, other agent", other, validators[0], [(0, "")])

        # Random activity among the scene: other agents only (the background knows no other).
        await background.run(events=60)

        # 6. Eleven negative feedbacks over three hours never fire; eleven in fifty minutes
        # fire once; with reset_on_trigger, three more within the hour do not fire again.
        await scene.restart_clock(hours=2)
        for i in range(11):
            await scene.at(18 * 60 * i)
            await scene.feedback("spread", agent, 10 + i, tag1="spam", client=clients[i % 4])
        await scene.restart_clock(hours=2)
        for i in range(14):
            await scene.at(5 * 60 * i)
            await scene.feedback("dense", agent, 20 + i, tag1="spam", client=clients[i % 4])

        # What the chain says should have been sent.
        events = await chain_events(devnet, boundary)
        expected = expected_deliveries(examples, events, agent, set(validators))
        await system.recorded(expected.deliveries, status="success")
        await eventually(lambda: len(telegram.messages) >= len(expected.telegram)
                         and len(sink.received) >= len(expected.webhooks)
                         and len(mcp.calls) >= len(expected.mcp), 20)  # fmt: skip
        # Every event evaluated and every job finished: nothing more can arrive.
        await processed_up_to_head(database_url, devnet)
        jobs = await eventually(lambda: finished_jobs(database_url), what="every job finished")
        results = await system.results()

    # The scene is what the examples describe (so that the checks below mean something):
    # each trigger fires for its events and not for its near misses.
    names = Counter(event.name for event in events)
    for name in ("Registered", "Transfer", "MetadataSet", "URIUpdated", "ValidationRequest",
                 "ValidationResponse", "NewFeedback"):  # fmt: skip
        assert names[name], f"no {name} after the triggers were created"
    sent, fired = scene.sent, {n: set(txs) for n, txs in expected.fired.items()}
    near_misses = {*sent["not low: 60"], *sent["not ours"], *sent["refund in tag2"],
                   *sent["with a file"], *sent["not ours, wrong hash"]}  # fmt: skip
    assert {*sent["low"], *sent["refund"], *sent["refund, no file"], *sent["spread"],
            *sent["dense"]} <= fired[1]  # fmt: skip
    assert not fired[1] & near_misses
    ours = {e.tx for e in events if e.name == "Registered" and e.agent in (agent, other)}
    assert len(ours) == 2
    assert ours < fired[2]  # and the background's registrations
    assert fired[2] == {e.tx for e in events if e.name == "Registered"}
    assert expected.fired[3] == [*sent["refund"], *sent["refund, no file"]]
    assert {
        *sent["listed: 50"],
        sent["listed: 80 then 79"][1],
        *sent["listed, other agent"],
    } <= fired[4]
    assert not fired[4] & {*sent["listed: 80"], sent["listed: 80 then 79"][0], *sent["not listed"]}
    assert not fired[4] & {e.tx for e in events if e.name == "ValidationRequest"}
    # 5. The average first falls below 70 at the third 40, and stays there.
    averages: list[float] = []
    for score in [e.score for e in events if e.tx in sent["ema"]]:
        previous = averages[-1] if averages else float(score)
        averages.append(ALPHA * float(score) + (1 - ALPHA) * previous)
    assert [i for i, a in enumerate(averages) if a < 70] == list(range(5, 13))
    assert [tx for tx in expected.fired[5] if tx in sent["ema"]] == sent["ema"][5:]
    # 6. Fired once: at the eleventh of the dense eleven, with a count of 11; never for the
    # eleven spread over three hours; not again for the three after it.
    assert expected.fired[6] == [sent["dense"][10]]
    assert expected.spam_counts == [11]
    assert expected.fired[7] == [*sent["refund"], *sent["with a file"]]

    # Telegram: every expected message once, nothing else, each accepted at the first try.
    received = [(m["chat_id"], unescape_markdown_v2(m["text"])
                 if m.get("parse_mode") == "MarkdownV2" else m["text"])
                for m in telegram.messages]  # fmt: skip
    assert Counter((chat, comparable(text)) for chat, text in received) == Counter(
        (chat, comparable(text)) for chat, text in expected.telegram
    )
    assert telegram.requests == len(telegram.messages)
    # 1. As Telegram showed it: MarkdownV2, values escaped, the chain's values.
    (low,) = [e for e in events if e.tx in sent["low"]]
    text = (
        f"Agent #{agent} received a low score: 45.5\nFrom: {clients[0]}\nTags: quality, a_b*c"
        f"\nBlock: {low.block}"
    )
    (shown,) = [m for m in telegram.messages if unescape_markdown_v2(m["text"]) == text]
    assert shown["parse_mode"] == "MarkdownV2"
    assert shown["chat_id"] == CHAT_REPUTATION
    assert "score: 45\\.5" in shown["text"]
    assert "a\\_b\\*c" in shown["text"]
    spam = [m["text"] for m in telegram.messages if "negative feedbacks" in m["text"]]
    assert spam == [f"Agent #{agent} got 11 negative feedbacks in an hour"]
    refunds = [m["text"] for m in telegram.messages if m["text"].startswith("Refund request")]
    (refund,) = [e for e in events if e.tx in sent["refund"]]
    uri = refund.values["feedbackURI"]
    assert sorted(refunds) == [f"Refund request for agent {agent}: score -100, file {uri}",
                               f"Refund request for agent {agent}: score -2.5, file "]  # fmt: skip

    # 3. The refund webhooks: signed, each once under its own key, with the chain's values
    # and the configured header.
    assert not sink.repeats
    assert len(sink.received) == len(sink.processed) == len(expected.webhooks) == 2
    bodies = {request.json()["score"]: request for request in sink.received}
    for event, body in expected.webhooks:
        request = bodies[body["score"]]
        assert request.signature_ok
        assert request.path == "/refund-alerts"
        assert request.headers["authorization"] == "Bearer EXAMPLE"
        assert request.json() == body
        assert body["client"] == event.values["clientAddress"].lower()
    assert [body for _, body in expected.webhooks] == [
        {"agent_id": str(agent), "score": "-100", "file_uri": uri,
         "client": refund.values["clientAddress"].lower()},
        {"agent_id": str(agent), "score": "-2.5", "file_uri": "", "client": clients[1]},
    ]  # fmt: skip

    # 7. The MCP server: one call per feedback with a file, the token accepted, the file
    # verified against the on-chain hash, every field the chain's.
    assert mcp.rejected == 0
    assert len(mcp.calls) == len(expected.mcp) == 2
    keys = [call["idempotency_key"] for call in mcp.calls]
    assert len(set(keys)) == len(keys)
    calls = {call["event"]["transaction_hash"]: call for call in mcp.calls}
    for event in expected.mcp:
        call = calls[event.tx]
        chain = {**event.fields(), "event_type": "NewFeedback", "chain_id": str(CHAIN)}
        assert {name: str(call["event"][name]) for name in chain} == chain
        raw = _file_bytes(files, chain["file_uri"])
        assert call["file"] == json.loads(raw)
        assert "0x" + keccak(raw).hex() == chain["file_hash"]
        assert call["trigger"]["name"] == "Feedback to agent 42's MCP server"
    assert files.requests["/feedback/great.json"] >= 1
    assert files.requests["/feedback/other.json"] == 0  # another agent's: never fetched

    # The audit trail: one successful attempt per delivery, nothing retried or failed, and
    # no job left over.
    assert len(results) == expected.deliveries
    assert Counter(r["status"] for r in results) == {"success": expected.deliveries}
    assert jobs == {"succeeded": expected.deliveries}


async def finished_jobs(database_url: str) -> Counter[str] | None:
    """The jobs by status, if none is left to run (queued or running)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (await conn.execute("SELECT status FROM action_jobs")).fetchall()
    jobs = Counter(str(row[0]) for row in rows)
    return None if jobs.keys() & {"queued", "running"} else jobs


async def _indexed_owner(system: System, agent: int) -> bool:
    page = await system.client.get("/events", headers=system.headers,
                                   params={"chain_id": CHAIN, "event_type": "Registered",
                                           "agent_id": agent})  # fmt: skip
    return page.status_code == 200 and bool(page.json()["items"])


def _file_bytes(files: FileServer, uri: str) -> bytes:
    if uri.startswith("data:"):
        return base64.b64decode(uri.split(",", 1)[1])
    return files.files[uri.removeprefix(files.base_url)]
