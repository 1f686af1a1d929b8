"""The seed's data is data the engine can use as it stands."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from erc8004_backend.database.admin import load_sql_file
from erc8004_backend.triggers.processor import load_trigger_index
from erc8004_backend.triggers.stateful import evaluate_trigger, scope_key, update_ema
from tests.conftest import ROOT

EMA_TRIGGER = "7a1e0000-0000-4000-8000-000000000003"  # agent 42's average below 70


async def test_the_seeds_ema_state_continues_where_the_sample_feedback_left_it(
    db: psycopg.Connection,
) -> None:
    load_sql_file(db, ROOT / "database" / "seeds" / "test_data.sql")
    async with await psycopg.AsyncConnection.connect(db.info.dsn) as conn:
        index = await load_trigger_index(conn)
    [trigger] = [t for t in index.candidates(84532, "reputation", "NewFeedback", 42)
                 if t.id == EMA_TRIGGER]  # fmt: skip
    [condition] = trigger.conditions.stateful
    fields = {"agent_id": 42, "score": 10}
    scope = scope_key(condition, fields)
    [(stored,)] = db.execute(
        "SELECT state FROM trigger_state WHERE trigger_id = %s AND scope = %s",
        (EMA_TRIGGER, scope),
    ).fetchall()

    evaluation = evaluate_trigger(
        trigger.conditions, fields, {scope: stored}, block_time=datetime.now(UTC)
    )

    expected = update_ema(81.81818181818181, 10.0, 2 / 11)  # 68.76
    assert evaluation.computed["ema_score"] == pytest.approx(expected)
    assert evaluation.states[scope][str(condition.position)]["n"] == 3
    assert evaluation.fired  # from an empty average, 10 alone would fire too: hence n
