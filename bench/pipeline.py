"""The whole pipeline under load: devnet activity -> `erc8004 run` -> signed webhooks.

    .venv/bin/python -m bench.pipeline --rate 500 --seconds 60

Processes, as on one production machine: anvil with our registries (started here), this
process driving the activity generator, `erc8004 run` (API, indexer, trigger processor and
action worker in one process) on an empty throwaway database of the local PostgreSQL, and
the webhook sink (`bench.sink`) in a process of its own.

Triggers: one per registry, created through the REST API, without conditions, each with one
`rest` action: every indexed event of every registry is delivered once, as a signed webhook
(a trigger watches one registry, so "every event" takes three), and the delivery rate equals
the event rate. The webhook URL names the event (`/e/<registry>/<transaction>/<log index>`).

The chain runs with `confirmations = 0`: the indexer confirms a block as soon as it stores
it, so the latency is the pipeline's own and not a multiple of the block time (with N
confirmations every event would wait N more blocks). The indexer polls the node every
`--poll-interval` seconds when caught up (default 10 ms: about 100 cheap calls a second to
a local node; on average half of it is part of the latency; the shipped chains poll every
0.5-2 s, which suits their block times of seconds).

Latency: from the moment the event's block is committed on the devnet to the sink's arrival
time (both wall clock on this machine). anvil runs without automine and every block is mined
here, by `evm_mine` (`TimedTransactor`), which answers once the block is committed: its
return time is the start. The indexer cannot see the block before that call began, so the
call's duration (reported) bounds the error. Not the receipts' arrival (later, after a
receipt poll) and not the block timestamp (whole seconds). No-one else mines, so the blocks
are numbered in order.

At the end every delivery is checked against the chain, not the database: the registries'
logs (eth_getLogs, from the deployment block to the head) that are indexed events must each
have arrived exactly once, with a valid signature. Stage times show where the latency goes:
stored and queued are the start of the indexer's and of the processor's transaction
(`created_at` of the event and of its job), attempt started is the arrival less the
worker's own measure of the attempt. The latencies are also given by the size of their
block (1-10, 11-50, 51 or more events): a block's events arrive together, and the last of a
large one waits for the work on all the others. Exits non-zero when a delivery is missing,
repeated or unexpected.

Activity (`--mode`): `batch` (the default) uses the registries' batch functions, in bursts
of what is due (three blocks per burst, a few events per transaction); `single` sends one
transaction per action, in rounds of up to 32 (one block each). On this 2-core machine the
single mode cannot keep 500 events/s for a minute: anvil's work per block and per
transaction grows with the chain's state, and in the pipeline it fell from 500/s to about
170/s by the end (315/s over the minute, anvil busy 0.7 of a core). The batch mode keeps
the rate, but anvil slows there too, and each block carries more events, which arrive at the
pipeline as one burst.

anvil runs with `--prune-history`, as in `bench.backfill --from-launch`: by default it keeps
the whole state after every block, in memory, and mines ever slower as the chain grows. With
`--keep-history` (as this bench ran until 2026-12-05) blocks fell from about 100 a second to
5 within the minute, and carried up to 190 events each by the end; pruned, from about 100 to
10 a second, and up to about 110 events. The indexer needs only logs and headers, which anvil keeps
either way. A real chain's blocks come at its block time, whatever its history.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
import structlog

from bench.common import child, console, peak_rss_mb, report, throwaway_database
from erc8004_backend.actions.rest import verify_signature
from erc8004_backend.chain.config import render_chain_table
from erc8004_backend.chain.events import SPECS_BY_TOPIC
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet import (
    ActivityGenerator,
    ActivityReport,
    DeployedRegistries,
    Transactor,
    TxRequest,
    deploy_registries,
    start_anvil,
)

REGISTRIES = ("reputation", "validation", "identity")  # identity last: the warm-up uses it
JWT_SECRET = "pipeline-bench-secret-pipeline-bench"  # noqa: S105 (a throwaway test secret)


class TimedTransactor(Transactor):
    """Mines every block itself (anvil's automine off) and notes, per block, the wall-clock
    time just before `evm_mine` and when it returned (the block committed)."""

    def __init__(self, rpc: RpcClient, head: int) -> None:
        super().__init__(rpc)
        self.head = head
        self.mined: dict[int, tuple[float, float]] = {}

    async def send_all(self, requests: Sequence[TxRequest]) -> list[dict[str, Any]]:
        return await self.send_in_blocks([requests])

    async def send_in_blocks(self, blocks: Sequence[Sequence[TxRequest]]) -> list[dict[str, Any]]:
        requests = [request for block in blocks for request in block]
        hashes: list[str] = []
        async with self._lock:
            for block in blocks:
                if block:
                    hashes += await self._submit(block)
                    await self._mine()
            for _ in range(100):  # whatever did not fit in its block
                status = await self.rpc.call("txpool_status")
                if int(status.get("pending", "0x0"), 16) == 0:
                    break
                await self._mine()
        return await self._check(requests, await self.wait_for_receipts(hashes))

    async def _mine(self) -> None:
        asked = time.time()
        await self.rpc.call("evm_mine")
        self.head += 1
        self.mined[self.head] = (asked, time.time())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def sign_in(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> str:
    """Wait for the API, register a user and return its bearer token."""
    for _ in range(600):
        if process.returncode is not None:
            raise SystemExit("erc8004 run stopped before it served (see its log)")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/ready")).status_code == 200:
                break
        await asyncio.sleep(0.05)
    else:
        raise SystemExit("erc8004 run did not become ready within 30 s")
    account = {"username": "bench", "email": "bench@example.com", "password": "bench-bench-1"}
    (await client.post("/auth/register", json=account)).raise_for_status()
    login = await client.post("/auth/login", json={"username": "bench",
                                                   "password": "bench-bench-1"})  # fmt: skip
    login.raise_for_status()
    return str(login.json()["access_token"])


async def create_triggers(
    client: httpx.AsyncClient, token: str, chain_id: int, sink: str
) -> dict[str, str]:
    """One trigger per registry, no conditions, one signed webhook each; registry -> secret."""
    secrets: dict[str, str] = {}
    for registry in REGISTRIES:
        url = f"{sink}/e/{registry}/{{{{transaction_hash}}}}/{{{{log_index}}}}"
        created = await client.post("/triggers", headers={"Authorization": f"Bearer {token}"},
                                    json={"name": f"every {registry} event", "chain_id": chain_id,
                                          "registry": registry, "actions": [{
                                              "action_type": "rest", "config": {"url": url}}]})  # fmt: skip
        if created.status_code != 201:
            raise SystemExit(f"cannot create the {registry} trigger: {created.text}")
        secrets[registry] = created.json()["webhook_secret"]
    return secrets


async def wait_for_count(sink: httpx.AsyncClient, count: int, timeout: float) -> int:
    """The sink's arrivals once there are `count`, or whatever arrived within `timeout`."""
    deadline = time.monotonic() + timeout
    arrived = 0
    while time.monotonic() < deadline:
        arrived = int((await sink.get("/count")).json())
        if arrived >= count:
            break
        await asyncio.sleep(0.1)
    return arrived


def quantiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}

    def at(q: float) -> float:
        if len(ordered) == 1:
            return ordered[0]
        return statistics.quantiles(ordered, n=1000, method="inclusive")[round(q * 1000) - 1]

    return {"p50_ms": round(at(0.5), 2), "p99_ms": round(at(0.99), 2),
            "max_ms": round(ordered[-1], 2),
            "mean_ms": round(statistics.fmean(ordered), 2)}  # fmt: skip


# Blocks by how many timed events they carry: a block's events reach the pipeline together,
# so the last of a large one waits for the work on all the others (see by_block_size).
BLOCK_SIZES = ((1, 10), (11, 50), (51, None))


def by_block_size(per_block: dict[int, list[float]]) -> list[dict[str, Any]]:
    """The latencies grouped by the size of their block (BLOCK_SIZES): per group, how many
    blocks and events, the events' share of all, and their quantiles."""
    total = sum(len(values) for values in per_block.values())
    groups = []
    for low, high in BLOCK_SIZES:
        blocks = [values for values in per_block.values()
                  if low <= len(values) and (high is None or len(values) <= high)]  # fmt: skip
        latencies = [value for values in blocks for value in values]
        groups.append({
            "events_per_block": f"{low}-{high}" if high is not None else f"{low}+",
            "blocks": len(blocks),
            "events": len(latencies),
            "share": round(len(latencies) / total, 3) if total else 0.0,
            **quantiles(latencies),
        })  # fmt: skip
    return groups


async def chain_events(
    rpc: RpcClient, registries: DeployedRegistries, head: int
) -> dict[tuple[str, int], tuple[str, int]]:
    """Every indexed event the registries emitted: (transaction, log index) -> (registry,
    block number)."""
    names = {address: name for name, address in registries.addresses.items()}
    found: dict[tuple[str, int], tuple[str, int]] = {}
    step = 2_000
    for start in range(registries.block_number, head + 1, step):
        logs = await rpc.get_logs(list(names), start, min(start + step - 1, head))
        for entry in logs:
            if entry["topics"] and entry["topics"][0] in SPECS_BY_TOPIC:
                key = (entry["transactionHash"].lower(), int(entry["logIndex"], 16))
                found[key] = (names[entry["address"].lower()], int(entry["blockNumber"], 16))
    return found


async def stage_times(url: str) -> dict[tuple[str, int], tuple[float, float, float]]:
    """(transaction, log index) -> when the event was stored and its job queued (the start
    of the indexer's and of the processor's transaction: now()), in epoch seconds, and how
    long the worker's attempt took (its own measure, whole ms; the first attempt's)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT e.transaction_hash, e.log_index, extract(epoch FROM e.created_at)::float8,"
            " extract(epoch FROM j.created_at)::float8, min(r.duration_ms)::float8 / 1000"
            " FROM events e JOIN action_jobs j ON j.event_id = e.id"
            " LEFT JOIN action_results r ON r.job_id = j.id"
            " GROUP BY 1, 2, 3, 4"
        )
        return {(tx.lower(), log_index): (stored, queued, attempt or 0.0)
                for tx, log_index, stored, queued, attempt in await cursor.fetchall()}  # fmt: skip


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and, as "machine", by all of them
    (from /proc: Linux; elsewhere nothing)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for name, pid in pids.items():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        jiffies = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        used["machine"] = (sum(jiffies) - jiffies[3] - jiffies[4]) / tick  # all but idle, iowait
    return used


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The measurement; `erc8004 run`'s log is kept (and named) only if it fails."""
    # SIGTERM (a timeout) cancels the run, so that anvil (in a session of its own), the
    # children and the database are cleaned up rather than left behind.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    work = Path(tempfile.mkdtemp(prefix="erc8004-pipeline-"))
    result = await measure(args, work)
    if result["missing"] or result["duplicates"] or result["unexpected"]:
        result["log"] = str(work / "run.log")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    closed = free_port()  # nothing listens here: registration files fail at once, locally
    env = {**os.environ, "ERC8004_ALLOW_PRIVATE_URLS": "true", "ERC8004_JWT_SECRET": JWT_SECRET,
           "ERC8004_IPFS_GATEWAY": f"http://127.0.0.1:{closed}/ipfs/",
           "ERC8004_BCRYPT_ROUNDS": "4"}  # fmt: skip
    with throwaway_database() as url:
        async with (
            start_anvil(extra_args=[] if args.keep_history else ["--prune-history"]) as node,
            node.rpc() as rpc,
            child("-m", "bench.sink", env=env, read=True) as sink_process,
        ):
            registries = await deploy_registries(rpc)
            transactor = TimedTransactor(rpc, await rpc.block_number())
            generator = ActivityGenerator(
                rpc, registries, seed=args.seed, transactor=transactor,
                endpoint_base=f"http://127.0.0.1:{closed}/agents",
            )  # fmt: skip
            await generator.setup()
            await rpc.call("evm_setAutomine", [False])  # from now on, blocks are mined here
            assert sink_process.stdout is not None
            line = (await asyncio.wait_for(sink_process.stdout.readline(), 30)).decode()
            sink_url = f"http://127.0.0.1:{int(line.split()[1])}"
            chain = registries.chain_config([node.url], confirmations=0,
                                            poll_interval=args.poll_interval)  # fmt: skip
            chains = work / "chains.toml"
            chains.write_text(render_chain_table(chain), encoding="utf-8")
            port = free_port()
            run_env = {**env, "DATABASE_URL": url}
            async with (
                child("-m", "erc8004_backend", "run", "--chain", chain.name, "--chains-file",
                      str(chains), "--port", str(port), env=run_env,
                      log=work / "run.log") as system,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1",
                                  timeout=30) as api,
                httpx.AsyncClient(base_url=sink_url, timeout=60) as sink,
            ):  # fmt: skip
                token = await sign_in(api, system)
                secrets = await create_triggers(api, token, chain.chain_id, sink_url)
                # Warm-up: an agent's registration (3 events) through the whole pipeline
                # proves the triggers are loaded before anything is timed.
                warm = await generator.run(events=3)
                if await wait_for_count(sink, warm.events, 30) < warm.events:
                    raise SystemExit(f"the warm-up's deliveries did not arrive; see {work}")
                pids = {"anvil": node.pid, "erc8004 run": system.pid,
                        "sink": sink_process.pid, "bench (generator)": os.getpid()}  # fmt: skip
                cpu_before = cpu_seconds(pids)
                activity = await drive(generator, args)
                cpu_after = cpu_seconds(pids)
                run_peak_rss_mb = peak_rss_mb(system.pid)
                head = await rpc.block_number()
                expected = await chain_events(rpc, registries, head)
                arrived = await wait_for_count(sink, len(expected), args.drain_timeout)
                await asyncio.sleep(1.0)  # a repeat, if any, has time to arrive too
                requests = (await sink.get("/requests")).json()
            stages = await stage_times(url)
            if system.returncode not in (0, None):
                raise SystemExit(f"erc8004 run failed ({system.returncode}); see {work}")
    seconds = activity.seconds
    busy = {name: round((cpu_after[name] - cpu_before[name]) / seconds, 2)
            for name in cpu_after if name in cpu_before}  # fmt: skip
    result = check(expected, requests, secrets, transactor.mined, activity, stages)
    result.update({
        "mode": args.mode, "rate": args.rate, "seconds": round(seconds, 2),
        "events": activity.events, "transactions": activity.transactions,
        "blocks": (activity.last_block or 0) - (activity.first_block or 0) + 1,
        "achieved_rate": round(activity.events / seconds, 1),
        "confirmations": chain.confirmations, "poll_interval": chain.poll_interval,
        "anvil_keeps_history": args.keep_history,
        "arrived_by_deadline": arrived,
        "cpu_cores_busy": busy,
        # erc8004 run's CPU (indexer, processor, worker, API) per event delivered.
        "run_cpu_ms_per_event": round(
            (cpu_after["erc8004 run"] - cpu_before["erc8004 run"]) * 1000 / activity.events, 3
        ) if "erc8004 run" in cpu_after and activity.events else None,
        "run_peak_rss_mb": run_peak_rss_mb,
    })  # fmt: skip
    return result


async def drive(generator: ActivityGenerator, args: argparse.Namespace) -> ActivityReport:
    """The timed activity, with a progress line every ten seconds."""
    noted = [time.monotonic()]

    def progress(part: ActivityReport) -> None:
        if time.monotonic() - noted[0] >= 10:
            noted[0] = time.monotonic()
            console.print(f"[dim]{part.seconds:5.1f} s: {part.events:,} events "
                          f"({part.events / part.seconds:,.0f}/s), block {part.last_block}[/]")  # fmt: skip

    events = max(3, round(args.rate * args.seconds))
    return await generator.run(events=events, rate=args.rate, batch=args.mode == "batch",
                               on_progress=progress)  # fmt: skip


def check(
    expected: dict[tuple[str, int], tuple[str, int]],
    requests: list[list[Any]],
    secrets: dict[str, str],
    mined: dict[int, tuple[float, float]],
    activity: ActivityReport,
    stages: dict[tuple[str, int], tuple[float, float, float]],
) -> dict[str, Any]:
    """Deliveries against the chain's events (each once, signed), and the latencies of the
    timed blocks' events."""
    seen: Counter[tuple[str, int]] = Counter()
    latency: list[float] = []
    stored: list[float] = []
    queued: list[float] = []
    attempted: list[float] = []
    per_block: dict[int, list[float]] = {}
    bad_signatures = 0
    timed = range(activity.first_block or 0, (activity.last_block or -1) + 1)
    for path, arrived, _key, timestamp, signed, body in requests:
        parts = path.split("/")  # "", "e", registry, transaction, log index
        if len(parts) != 5 or parts[1] != "e":
            continue
        key = (parts[3].lower(), int(parts[4]))
        seen[key] += 1
        secret = secrets.get(parts[2], "")
        if not verify_signature(secret, timestamp, body.encode(), signed):
            bad_signatures += 1
        if key not in expected or seen[key] > 1:
            continue
        block = expected[key][1]
        if block not in timed:
            continue  # the warm-up
        committed = mined[block][1]
        latency.append((arrived - committed) * 1000)
        per_block.setdefault(block, []).append(latency[-1])
        if key in stages:
            stored.append((stages[key][0] - committed) * 1000)
            queued.append((stages[key][1] - committed) * 1000)
            attempted.append((arrived - stages[key][2] - committed) * 1000)
    mine_ms = [(done - asked) * 1000 for block, (asked, done) in mined.items() if block in timed]
    by_registry = Counter(registry for registry, _ in expected.values())
    return {
        "expected": len(expected),
        "expected_by_registry": dict(by_registry),
        "deliveries": sum(seen.values()),
        "missing": len(set(expected) - set(seen)),
        "duplicates": sum(count - 1 for count in seen.values() if count > 1),
        "unexpected": len(set(seen) - set(expected)),
        "bad_signatures": bad_signatures,
        "timed_deliveries": len(latency),
        # block, committed (epoch s), events, worst latency (ms): to see when the tail happens
        "blocks_detail": [
            (block, round(mined[block][1], 4), len(values), round(max(values), 1))
            for block, values in sorted(per_block.items())
        ],
        "latency": quantiles(latency),
        "latency_by_block_size": by_block_size(per_block),
        "stages": {
            "stored": quantiles(stored),
            "queued": quantiles(queued),
            "attempt_started": quantiles(attempted),
        },
        "evm_mine": quantiles(mine_ms),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="of activity at that rate")
    parser.add_argument("--mode", choices=["single", "batch"], default="batch",
                        help="the batch functions, or one transaction per action")  # fmt: skip
    parser.add_argument("--poll-interval", type=float, default=0.01,
                        help="the indexer's head poll when caught up (s)")  # fmt: skip
    parser.add_argument("--drain-timeout", type=float, default=60.0,
                        help="seconds to wait for the last deliveries")  # fmt: skip
    parser.add_argument("--seed", type=int, default=8004)
    parser.add_argument(
        "--keep-history",
        action="store_true",
        help="anvil keeps every block's state (and slows as the chain grows)",
    )
    parser.add_argument("--json", type=Path, default=None, help="where to write the result")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(run(args))
    delay, stages, mine = result["latency"], result["stages"], result["evm_mine"]
    rows = [
        ("activity", f"{result['mode']}: {result['events']:,} events, "
                     f"{result['transactions']:,} txs, {result['blocks']:,} blocks"),
        ("event rate (asked / achieved)", f"{result['rate']:,.0f}/s / "
                                          f"{result['achieved_rate']:,.0f}/s"),
        ("confirmations, indexer poll", f"{result['confirmations']}, "
                                        f"{result['poll_interval'] * 1000:g} ms"),
        ("anvil's block states", "all kept" if result["anvil_keeps_history"] else "pruned"),
        ("deliveries / chain's events", f"{result['deliveries']:,} / {result['expected']:,}"),
        ("missing, twice, unexpected", f"{result['missing']}, {result['duplicates']}, "
                                       f"{result['unexpected']}"),
        ("bad signatures", f"{result['bad_signatures']}"),
        ("block -> delivered p50 / p99 / max", f"{delay['p50_ms']:.1f} / {delay['p99_ms']:.1f}"
                                               f" / {delay['max_ms']:.1f} ms"),
        ("block -> stored p50 / p99", f"{stages['stored']['p50_ms']:.1f} / "
                                      f"{stages['stored']['p99_ms']:.1f} ms"),
        ("block -> job queued p50 / p99", f"{stages['queued']['p50_ms']:.1f} / "
                                          f"{stages['queued']['p99_ms']:.1f} ms"),
        ("block -> attempt started p50 / p99", f"{stages['attempt_started']['p50_ms']:.1f} / "
                                               f"{stages['attempt_started']['p99_ms']:.1f} ms"),
        *((f"  in blocks of {group['events_per_block']} events",
           f"{group['share']:.0%} of events: p50 {group['p50_ms']:.1f} / "
           f"p99 {group['p99_ms']:.1f} ms")
          for group in result["latency_by_block_size"] if group["events"]),
        ("evm_mine call p50 / max", f"{mine['p50_ms']:.1f} / {mine['max_ms']:.1f} ms"),
        (f"cores busy (of {os.cpu_count()})", ", ".join(f"{name} {value:.2f}"
                                 for name, value in result["cpu_cores_busy"].items())),
        ("erc8004 run: CPU per event, peak memory",
         f"{result['run_cpu_ms_per_event']} ms, {result['run_peak_rss_mb']} MB"),
    ]  # fmt: skip
    report("pipeline", rows, result, args.json)
    if result["missing"] or result["duplicates"] or result["unexpected"]:
        raise SystemExit(f"deliveries do not match the chain: {result['missing']} missing,"
                         f" {result['duplicates']} twice, {result['unexpected']} unexpected;"
                         f" erc8004 run's log: {result['log']}")  # fmt: skip


if __name__ == "__main__":
    main()
