"""The benchmarks still run: each at the tiny size of `python -m bench --size tiny`, printing
its table, writing its JSON and making its row of the runner's summary. The runner itself is
run with one benchmark: the others' rows are checked by their own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import SIZES, summarize
from bench.pipeline import by_block_size
from tests.conftest import ROOT


def bench_command(admin_url: str, *args: str) -> str:
    """`python -m bench...` with `args`, on the test server; its output."""
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "BENCH_DATABASE_URL": admin_url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_bench(name: str, admin_url: str, out: Path) -> dict[str, object]:
    """bench.NAME at the tiny size; its JSON, which the runner's summary can show."""
    printed = bench_command(admin_url, f"bench.{name}", *SIZES[name]["tiny"], "--json", str(out))
    assert f"bench/{name}" in printed
    document: dict[str, object] = json.loads(out.read_text())
    assert document["benchmark"] == name
    _, summary = summarize({name: document}, "tiny")
    (row,) = summary["rows"]
    assert row["benchmark"] == name
    assert all(row.values()), row
    return document


@pytest.mark.timeout(300)
def test_ingest_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("ingest", admin_url, tmp_path / "ingest.json")
    assert result["events"] == 500
    assert isinstance(result["events_per_second"], float)
    assert result["events_per_second"] > 0


@pytest.mark.devnet
@pytest.mark.timeout(300)
def test_backfill_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("backfill", admin_url, tmp_path / "backfill.json")
    assert result["events"] == 500
    assert isinstance(result["batches"], int)
    assert result["batches"] >= 1


@pytest.mark.devnet
@pytest.mark.timeout(300)
def test_backfill_from_launch_benchmark(admin_url: str, tmp_path: Path) -> None:
    out = tmp_path / "from-launch.json"
    printed = bench_command(admin_url, "bench.backfill", "--from-launch", "--events", "500",
                            "--events-per-block", "100", "--startup-runs", "2",
                            "--json", str(out))  # fmt: skip
    assert "indexer --once, launch to exit" in printed
    result = json.loads(out.read_text())
    assert result["benchmark"] == "backfill-from-launch"
    assert result["events"] == 500  # and the bench checked each command stored them all
    for command in ("indexer_once", "migrate_and_indexer", "run_caught_up"):
        assert 0 < result[f"{command}_seconds"] < 120
    assert 20 < result["run_peak_rss_mb"] < 2000
    # The start-up, launched twice: each to the indexer's first line, indexer.start.
    assert len(result["startup_seconds"]) == len(result["help_seconds"]) == 2
    assert 0 < result["startup_median_seconds"] < 30
    assert 0 < result["help_median_seconds"] < 30


@pytest.mark.devnet
@pytest.mark.timeout(300)
def test_backfill_against_a_commit(admin_url: str, tmp_path: Path) -> None:
    # Against HEAD: the commit's tree, exported, and this one each sync the same chain.
    out = tmp_path / "against.json"
    printed = bench_command(admin_url, "bench.backfill", "--against", "HEAD", "--pairs", "1",
                            "--events", "300", "--events-per-block", "100", "--json", str(out))  # fmt: skip
    assert "this tree's rate / theirs, median" in printed
    result = json.loads(out.read_text())
    assert result["benchmark"] == "backfill-against"
    assert result["events"] == 300
    for side in ("this", "against"):  # each stored every event to the head, or the bench fails
        (run,) = result["runs"][side]
        assert run["events"] == 300
        assert run["seconds"] > 0
    assert result["median_ratio"] == result["ratios"][0] > 0


@pytest.mark.timeout(300)
def test_triggers_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("triggers", admin_url, tmp_path / "triggers.json")
    memory, processor = result["in_memory"], result["processor"]
    assert isinstance(memory, dict)
    assert isinstance(processor, dict)
    assert processor["events"] == 500
    assert processor["jobs"] == memory["fired"]  # the loop and the pure core agree
    history = result["processor_history"]
    assert isinstance(history, dict)
    assert history["events"] == 500
    assert history["jobs"] == 0  # every event older than the triggers: nothing fires


@pytest.mark.timeout(300)
def test_delivery_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("delivery", admin_url, tmp_path / "delivery.json")
    speed, latency = result["throughput"], result["latency"]
    assert isinstance(speed, dict)
    assert isinstance(latency, dict)
    assert speed["delivered"] == 50  # every queued job reached the sink
    channels = result["channels"]
    assert isinstance(channels, dict)
    assert sorted(channels) == ["discord", "email", "pagerduty", "slack", "telegram"]
    assert all(run["delivered"] == 20 for run in channels.values())  # each to its stand-in
    assert latency["delivered"] == latency["events"] == 50  # every event, once
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]


@pytest.mark.timeout(300)
def test_api_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("api", admin_url, tmp_path / "api.json")
    assert result["events"] == 2000
    queries = result["queries"]
    assert isinstance(queries, dict)
    assert len(queries) >= 10
    for name, query in queries.items():  # every request answered 200, or the bench fails
        assert query["requests"] == 10, name
        assert 0 < query["p50_ms"] <= query["p99_ms"] <= query["max_ms"], name
    assert queries["newest page"]["mean_items"] == 50
    assert queries["one event by id"]["mean_items"] == 1


@pytest.mark.timeout(300)
def test_agents_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("agents", admin_url, tmp_path / "agents.json")
    assert result["feedback"] == 2000
    model = result["model"]
    assert isinstance(model, dict)
    # The generated history went through read_model_rebuild into the model.
    assert model["agents"] == 50
    assert model["feedback"] == 2000  # one feedback per generated NewFeedback: indexes unique
    assert 0 < model["revoked"] < model["feedback"]
    assert model["responses"] > 0
    assert model["validation_requests"] > 0
    assert model["registrations"] == 50
    routes = result["routes"]
    assert isinstance(routes, dict)
    assert len(routes) >= 10
    for name, route in routes.items():  # every request answered 200, or the bench fails
        assert route["requests"] == 10, name
        assert 0 < route["p50_ms"] <= route["p99_ms"] <= route["max_ms"], name
    assert routes["/agents (newest)"]["mean_items"] == 20  # a full page
    # The busiest agent's lens summary read every one of its feedback.
    busiest = result["busiest_agents"]
    assert isinstance(busiest, list)
    assert routes["lens summary, the busiest agent"]["mean_items"] == busiest[0]["feedback"]
    cold = "lens summary, the busiest agent, read cold"
    assert routes[cold]["mean_items"] == busiest[0]["feedback"]
    # The bar is for the routes as served: the cold read is reported beside it.
    assert result["worst_p99_ms"] == max(route["p99_ms"] for name, route in routes.items()
                                         if name != cold)  # fmt: skip


@pytest.mark.devnet
@pytest.mark.timeout(300)
def test_pipeline_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("pipeline", admin_url, tmp_path / "pipeline.json")
    assert result["events"] == 150
    # Every event the chain emitted (the timed ones and the warm-up's) arrived once, signed.
    assert result["deliveries"] == result["expected"] == 150 + 3
    assert result["missing"] == result["duplicates"] == result["unexpected"] == 0
    assert result["bad_signatures"] == 0
    assert result["timed_deliveries"] == 150
    assert result["confirmations"] == 0
    assert result["anvil_keeps_history"] is False  # --prune-history, unless asked
    latency = result["latency"]
    assert isinstance(latency, dict)
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert isinstance(result["run_cpu_ms_per_event"], float)
    assert result["run_cpu_ms_per_event"] > 0
    assert isinstance(result["run_peak_rss_mb"], float)
    assert 20 < result["run_peak_rss_mb"] < 2000


def test_the_runner_writes_the_results_and_one_summary(admin_url: str, tmp_path: Path) -> None:
    printed = bench_command(admin_url, "bench", "--size", "tiny", "--only", "triggers",
                            "--out", str(tmp_path))  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["benchmark"] for row in summary["rows"]] == ["triggers"]
    results = summary["results"]["triggers"]
    assert results["processor"]["events"] == 500
    assert json.loads((tmp_path / "triggers.json").read_text()) == results
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown in printed
    assert markdown.count("\n| ") == 2  # the header and the row
    assert "| triggers | 50 triggers over 500 events |" in markdown
    assert "`python -m bench.triggers --triggers 50 --events 500` |" in markdown


def test_pipeline_latencies_are_grouped_by_the_size_of_their_block() -> None:
    per_block = {1: [10.0, 12.0], 2: [20.0] * 11, 3: [100.0 + n for n in range(60)]}
    small, middle, large = by_block_size(per_block)
    assert (small["events_per_block"], small["blocks"], small["events"]) == ("1-10", 1, 2)
    assert (middle["events_per_block"], middle["blocks"], middle["events"]) == ("11-50", 1, 11)
    assert (large["events_per_block"], large["blocks"], large["events"]) == ("51+", 1, 60)
    assert small["share"] + middle["share"] + large["share"] == pytest.approx(1.0)
    assert large["share"] == round(60 / 73, 3)
    assert (small["max_ms"], middle["p50_ms"], large["max_ms"]) == (12.0, 20.0, 159.0)
    assert [group["events"] for group in by_block_size({})] == [0, 0, 0]
