"""Every benchmark at one size, then one summary (markdown table + JSON):

    .venv/bin/python -m bench                    # the sizes the README reports
    .venv/bin/python -m bench --size tiny        # seconds: proves they all still run
    .venv/bin/python -m bench --only api --only delivery

Each benchmark runs in its own process (as `python -m bench.NAME`) and writes its own JSON;
the summary reads those back, so it shows what each one measured, with its bar.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, console, machine

# name -> size -> arguments
SIZES: dict[str, dict[str, list[str]]] = {
    "ingest": {"tiny": ["--events", "500", "--batch-size", "100"], "full": ["--events", "100000"]},
    "backfill": {"tiny": ["--events", "500", "--events-per-block", "100"],
                 "full": ["--events", "100000"]},
    "triggers": {"tiny": ["--triggers", "50", "--events", "500"], "full": []},
    "delivery": {"tiny": ["--jobs", "50", "--channel-jobs", "20", "--rate", "50",
                          "--seconds", "1"],
                 "full": ["--jobs", "20000", "--channel-jobs", "5000", "--rate", "500",
                          "--seconds", "20"]},
    "api": {"tiny": ["--events", "2000", "--requests", "10"], "full": ["--events", "1000000"]},
    "agents": {"tiny": ["--feedback", "2000", "--agents", "50", "--clients", "200",
                        "--requests", "10"],
               "full": ["--feedback", "1000000", "--agents", "10000", "--clients", "50000"]},
    "pipeline": {"tiny": ["--rate", "50", "--seconds", "3"],
                 "full": ["--rate", "500", "--seconds", "60"]},
}  # fmt: skip


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


# name -> (what was measured, the result in words, the bar)
HEADLINES: dict[str, Callable[[dict[str, Any]], tuple[str, str, str]]] = {
    "ingest": lambda d: (f"decode + store {d['events']:,} raw logs",
                         f"{_rate(d['events_per_second'])} (decoding alone "
                         f"{_rate(d['decode_events_per_second'])})", "40,000/s"),
    "backfill": lambda d: (f"backfill {d['events']:,} devnet events",
                           _rate(d["events_per_second"]), "30,000/s"),
    "triggers": lambda d: (f"{d['triggers']:,} triggers over {d['events']:,} events",
                           f"in memory {_rate(d['in_memory']['events_per_second'])}, "
                           f"processor {_rate(d['processor']['events_per_second'])} live, "
                           f"{_rate(d['processor_history']['events_per_second'])} history",
                           "processor 25,000/s live, 60,000/s history"),
    "delivery": lambda d: (f"deliveries; latency at {d['latency']['rate']:,.0f} events/s",
                           f"{_rate(d['throughput']['deliveries_per_second'])}; p50 "
                           f"{d['latency']['p50_ms']} ms, p99 {d['latency']['p99_ms']} ms",
                           "1,000/s; p50 < 20 ms, p99 < 100 ms"),
    "api": lambda d: (f"{len(d['queries'])} event queries over {d['events']:,} events",
                      f"worst p99 {d['worst_p99_ms']} ms", f"p99 < {d['bar_p99_ms']:g} ms"),
    "agents": lambda d: (f"{len(d['routes'])} agents routes over {d['feedback']:,} feedback, "
                         f"{d['agents']:,} agents (read model rebuilt in "
                         f"{d['rebuild_seconds']:g} s)",
                         f"worst p99 {d['worst_p99_ms']} ms", f"p99 < {d['bar_p99_ms']:g} ms"),
    "pipeline": lambda d: (f"devnet block -> webhook, {d['events']:,} events at "
                           f"{d['achieved_rate']:,.0f}/s ({d['mode']} txs)",
                           f"p50 {d['latency']['p50_ms']} ms, p99 {d['latency']['p99_ms']} ms; "
                           f"{d['deliveries']:,} of {d['expected']:,} delivered once",
                           "p50 < 20 ms, p99 < 100 ms at 500/s"),
}  # fmt: skip


def run_one(name: str, size: str, out: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", f"bench.{name}", *SIZES[name][size], "--json", str(out)]
    console.rule(f"bench/{name} ({size})")
    subprocess.run(command, cwd=ROOT, check=True)
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def summarize(results: dict[str, dict[str, Any]], size: str) -> tuple[str, dict[str, Any]]:
    rows = []
    for name, document in results.items():
        measured, result, bar = HEADLINES[name](document)
        command = " ".join(["python -m", f"bench.{name}", *SIZES[name][size]])
        rows.append({"benchmark": name, "measured": measured, "result": result, "bar": bar,
                     "command": command})  # fmt: skip
    now = datetime.now(UTC).isoformat(timespec="seconds")
    info = machine()
    lines = [
        f"Benchmarks at size `{size}`, {now}, on {info['platform']} ({info['cpus']} CPUs, "
        f"Python {info['python']}).",
        "",
        "| benchmark | measured | result | bar | command |",
        "|---|---|---|---|---|",
        *(f"| {r['benchmark']} | {r['measured']} | {r['result']} | {r['bar']} | "
          f"`{r['command']}` |" for r in rows),
    ]  # fmt: skip
    summary = {"size": size, "at": now, "machine": info, "rows": rows, "results": results}
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "full"], default="full")
    parser.add_argument("--only", action="append", choices=list(SIZES), help="repeatable")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        name: run_one(name, args.size, args.out / f"{name}.json")
        for name in (args.only or list(SIZES))
    }
    markdown, summary = summarize(results, args.size)
    (args.out / "summary.md").write_text(markdown, encoding="utf-8")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(markdown)
    console.print(f"[dim]wrote {args.out / 'summary.md'} and summary.json[/]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
