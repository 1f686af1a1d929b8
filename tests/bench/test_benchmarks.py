"""The benchmarks still run: at a tiny size, each prints its table and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def run_bench(name: str, admin_url: str, out: Path, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "BENCH_DATABASE_URL": admin_url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"bench/{name}" in result.stdout
    document: dict[str, object] = json.loads(out.read_text())
    assert document["benchmark"] == name
    return document


@pytest.mark.timeout(300)
def test_ingest_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("ingest", admin_url, tmp_path / "ingest.json", "--events", "500",
                       "--batch-size", "100")  # fmt: skip
    assert result["events"] == 500
    assert isinstance(result["events_per_second"], float)
    assert result["events_per_second"] > 0


@pytest.mark.timeout(300)
def test_backfill_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("backfill", admin_url, tmp_path / "backfill.json", "--events", "500",
                       "--events-per-block", "100")  # fmt: skip
    assert result["events"] == 500
    assert isinstance(result["batches"], int)
    assert result["batches"] >= 1


@pytest.mark.timeout(300)
def test_triggers_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("triggers", admin_url, tmp_path / "triggers.json", "--triggers", "50",
                       "--events", "500")  # fmt: skip
    memory, processor = result["in_memory"], result["processor"]
    assert isinstance(memory, dict)
    assert isinstance(processor, dict)
    assert processor["events"] == 500
    assert processor["jobs"] == memory["fired"]  # the loop and the pure core agree


@pytest.mark.timeout(300)
def test_delivery_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("delivery", admin_url, tmp_path / "delivery.json", "--jobs", "50",
                       "--rate", "50", "--seconds", "1")  # fmt: skip
    speed, latency = result["throughput"], result["latency"]
    assert isinstance(speed, dict)
    assert isinstance(latency, dict)
    assert speed["delivered"] == 50  # every queued job reached the sink
    assert latency["delivered"] == latency["events"] == 50  # every event, once
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]


@pytest.mark.timeout(300)
def test_api_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("api", admin_url, tmp_path / "api.json", "--events", "2000",
                       "--requests", "10")  # fmt: skip
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
def test_pipeline_benchmark(admin_url: str, tmp_path: Path) -> None:
    result = run_bench("pipeline", admin_url, tmp_path / "pipeline.json", "--rate", "50",
                       "--seconds", "3")  # fmt: skip
    assert result["events"] == 150
    # Every event the chain emitted (the timed ones and the warm-up's) arrived once, signed.
    assert result["deliveries"] == result["expected"] == 150 + 3
    assert result["missing"] == result["duplicates"] == result["unexpected"] == 0
    assert result["bad_signatures"] == 0
    assert result["timed_deliveries"] == 150
    assert result["confirmations"] == 0
    latency = result["latency"]
    assert isinstance(latency, dict)
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]


@pytest.mark.timeout(600)
def test_the_runner_runs_every_benchmark_and_writes_one_summary(
    admin_url: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
        env={**os.environ, "BENCH_DATABASE_URL": admin_url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    names = ["ingest", "backfill", "triggers", "delivery", "api", "pipeline"]
    assert [row["benchmark"] for row in summary["rows"]] == names
    assert summary["results"]["ingest"]["events"] == 500
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.count("\n| ") == len(names) + 1  # header + one row each
    assert "| delivery | deliveries; latency at 50 events/s |" in markdown
    assert all((tmp_path / f"{name}.json").exists() for name in names)
