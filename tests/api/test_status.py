"""Health, readiness, metrics and the indexers' status through the real application."""

from __future__ import annotations

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from erc8004_backend.api.app import Pool
from erc8004_backend.api.status import migration_problem
from tests.api.conftest import Account, ApiClient, api_settings, app_on, client_of
from tests.conftest import MIGRATIONS


async def test_health_and_ready(api: ApiClient) -> None:
    assert (await api.get("/health")).json() == {"status": "ok"}
    ready = await api.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_readiness_names_what_is_wrong_with_the_migrations() -> None:
    from erc8004_backend.database.migrations import load_source

    source = load_source(MIGRATIONS)
    applied = [
        {"version": m.version, "success": True, "checksum": m.checksum} for m in source.forward
    ]
    assert migration_problem(applied, MIGRATIONS) is None
    assert "1 migration(s) pending" in str(migration_problem(applied[:-1], MIGRATIONS))
    failed = [*applied[:-1], {**applied[-1], "success": False}]
    assert "partially applied" in str(migration_problem(failed, MIGRATIONS))
    changed = [*applied[:-1], {**applied[-1], "checksum": b"x"}]
    assert "changed after it was applied" in str(migration_problem(changed, MIGRATIONS))
    unknown = [*applied, {"version": 99999999999999, "success": True, "checksum": b""}]
    assert "unknown to this version" in str(migration_problem(unknown, MIGRATIONS))


async def test_metrics_count_requests_by_route_and_read_the_system(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("INSERT INTO checkpoints (chain_id, block_number, head_block_number)"
                     " VALUES (84532, 90, 100)")  # fmt: skip
    for _ in range(3):
        await api.get("/triggers/00000000-0000-4000-8000-000000000001", headers=alice.headers)
    response = await api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    route = "/triggers/{trigger_id}"  # the route template under /api/v1
    key = ("erc8004_api_requests_total",
           (("method", "GET"), ("route", route), ("status", "404")))  # fmt: skip
    assert samples[key] == 3
    # A method of the client's invention is one label, "other", however many there are.
    for n in range(3):
        await api.request(f"MADEUP{n}", "/no/such/path")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families((await api.get("/metrics")).text)
        for s in family.samples
    }
    methods = {dict(labels).get("method") for name, labels in samples
               if name == "erc8004_api_requests_total"}  # fmt: skip
    assert "other" in methods
    assert methods <= {"GET", "POST", "other"}  # POST: signing up and in
    assert samples[("erc8004_indexer_head_lag_blocks", (("chain_id", "84532"),))] == 10
    assert samples[("erc8004_action_queue_depth", ())] == 0
    assert samples[("erc8004_action_jobs", (("status", "dead"),))] == 0
    assert ("erc8004_events_indexed", ()) in samples
    assert any(name == "erc8004_api_request_seconds_bucket" for name, _ in samples)


async def test_indexer_status_per_chain(api: ApiClient, alice: Account, migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number,"
            " head_block_number, last_error, last_error_at) VALUES"
            " (84532, 90, 85, 100, NULL, NULL), (80002, 5, 5, 5, 'rpc timed out', now())"
        )
    assert (await api.get("/indexer/status")).status_code == 401
    chains = (await api.get("/indexer/status", headers=alice.headers)).json()
    assert [(c["chain_id"], c["head_lag"], c["last_error"]) for c in chains] == [
        (80002, 0, "rpc timed out"),
        (84532, 10, None),
    ]


async def test_indexer_status_shows_the_logs_nothing_decoded_by_registry_and_topic0(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    """So that a new ABI version on a chain is noticed: every log at a registry's address
    that is neither an event we index nor a known non-agent event."""
    unknown, feedback = "0x" + "9a" * 32, "0x" + "6a" * 32
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("INSERT INTO checkpoints (chain_id, block_number, head_block_number)"
                     " VALUES (84532, 90, 100), (80002, 5, 5)")  # fmt: skip
        for block, log_index, registry, topic0, error in [
            (12, 0, "identity", unknown, None),
            (40, 3, "identity", unknown, None),
            (31, 1, "identity", unknown, None),
            (20, 0, "reputation", feedback, "NewFeedback has 3 indexed values, the log 1"),
            (25, 0, "reputation", None, None),
        ]:
            conn.execute(
                "INSERT INTO unknown_logs (chain_id, block_number, block_hash, block_time,"
                " transaction_hash, log_index, address, registry, topic0, decode_error)"
                " VALUES (84532, %s, %s, now(), %s, %s, %s, %s, %s, %s)",
                [block, f"0x{block:064x}", f"0x{block:062x}{log_index:02x}", log_index,
                 "0x" + "ab" * 20, registry, topic0, error],
            )  # fmt: skip
    chains = (await api.get("/indexer/status", headers=alice.headers)).json()
    by_chain = {chain["chain_id"]: chain["unknown_logs"] for chain in chains}
    assert by_chain[80002] == []
    assert by_chain[84532] == [
        {"registry": "identity", "topic0": unknown, "logs": 3, "first_block": 12,
         "last_block": 40, "last_transaction_hash": f"0x{40:062x}03", "decode_error": None},
        {"registry": "reputation", "topic0": None, "logs": 1, "first_block": 25,
         "last_block": 25, "last_transaction_hash": f"0x{25:062x}00", "decode_error": None},
        {"registry": "reputation", "topic0": feedback, "logs": 1, "first_block": 20,
         "last_block": 20, "last_transaction_hash": f"0x{20:062x}00",
         "decode_error": "NewFeedback has 3 indexed values, the log 1"},
    ]  # fmt: skip
    samples = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families((await api.get("/metrics")).text)
        for s in family.samples
        if s.name == "erc8004_indexer_unknown_logs"
    }
    assert samples == {
        (("chain_id", "84532"), ("registry", "identity"), ("topic0", unknown)): 3,
        (("chain_id", "84532"), ("registry", "reputation"), ("topic0", "none")): 1,
        (("chain_id", "84532"), ("registry", "reputation"), ("topic0", feedback)): 1,
    }


def request_count(metrics_text: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "erc8004_api_requests_total" and sample.labels["route"] == route
    )


async def test_an_application_given_new_state_counts_from_zero(
    migrated_url: str, pool: Pool
) -> None:
    """The tests reuse one application with new state (attach_state) for each test: no rate
    limit count or metric of one reaches the next."""
    settings = api_settings(migrated_url, rate_limit_ip="3/minute")
    with app_on(settings, pool) as first:
        async with client_of(first) as api:
            assert [(await api.get("/health")).status_code for _ in range(4)] == [200] * 3 + [429]
    with app_on(settings, pool) as second:
        assert second is first
        async with client_of(second) as api:
            assert (await api.get("/health")).status_code == 200
            assert request_count((await api.get("/metrics")).text, "/health") == 1
