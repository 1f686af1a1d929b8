"""`erc8004 demo`, as the README's main job runs it (output not a terminal): every example
trigger and the reputation threshold fire within the first half minute, through the real API,
worker and local targets, exactly as often as the scene says; the agents' numbers are
printed as they move."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import psycopg

from erc8004_backend.demo.scenario import SCENE, Feedback
from erc8004_backend.demo.view import summary_text
from erc8004_backend.triggers.stateful import update_ema
from tests.conftest import ROOT
from tests.demo.test_scenario import demo_agent_summaries, expected_crossings

SECONDS = 32


def expected_firings() -> dict[str, int]:
    """What the scene alone sets off for the demo agent (background activity leaves it alone)."""
    scores = [step.score for step in SCENE if isinstance(step, Feedback)]
    averages: list[float] = []
    for score in scores:
        averages.append(update_ema(averages[-1] if averages else None, score, 2 / 11))
    low = [score for score in scores if score < 50]
    return {
        "Low score alert": sum(score < 60 for score in scores),
        "Refund requests": sum(isinstance(s, Feedback) and s.tag1 == "refund" for s in SCENE),
        "EMA score drop": sum(average < 70 for average in averages),
        "Feedback spam": len(low) // 11,
        "Feedback to agent": sum(isinstance(s, Feedback) and s.with_file for s in SCENE),
        "Agent ": len(expected_crossings()),  # its reputation below the floor
    }


def test_demo_fires_every_example_trigger_and_delivers_through_every_channel(
    admin_url: str, database_url: str
) -> None:
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    finished = subprocess.run(
        [sys.executable, "-m", "erc8004_backend", "demo", "--database-url", admin_url,
         "--database-name", str(name), "--port", "0", "--seconds", str(SECONDS)],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    # Where the dashboard is and how to sign in to it (a log shows no view: stderr says it).
    assert re.search(r"dashboard on http://127\.0\.0\.1:\d+/ \(sign in as demo, password"
                     r" demo-password\)", finished.stderr), finished.stderr[-2000:]  # fmt: skip

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("""
            SELECT t.name, count(DISTINCT j.event_id),
                   count(j.id) FILTER (WHERE j.status = 'succeeded'),
                   count(j.id) FILTER (WHERE j.status <> 'succeeded')
            FROM triggers AS t LEFT JOIN action_jobs AS j ON j.trigger_id = t.id
            GROUP BY t.name""").fetchall()  # fmt: skip
        failures = conn.execute(
            "SELECT count(*) FROM action_results WHERE status <> 'success'"
        ).fetchone()
    fired = {row[0]: row[1] for row in rows}
    assert len(fired) == 8
    assert all(count > 0 for count in fired.values()), fired
    assert all(row[3] == 0 for row in rows), rows  # everything delivered, nothing pending
    assert failures == (0,)
    for prefix, count in expected_firings().items():
        (actual,) = [fired[name] for name in fired if name.startswith(prefix)]
        assert actual == count, (prefix, fired)

    # What the live view printed: a delivery through each channel, verified.
    assert "delivered telegram: chat 123456789: Agent \\#" in output
    assert "delivered webhook: POST /refund-alerts (signature ok)" in output
    assert "file verified" in output
    assert " fell from 61 to 57 (8 feedback)" in output
    assert "demo summary" in output
    # The demo agent's numbers as they moved, and at the end (the summary wraps at 80
    # columns: compared with its words joined).
    (agent,) = re.findall(r"registered the demo agent #(\d+),", output)
    first, *_, last = demo_agent_summaries()
    demo_agent = f"#{agent} Demo Agent (owner 0xf39f…2266)"
    early = f"{demo_agent}: 1 feedback, 0 revoked, 0 answered · getSummary {summary_text(first)}"
    late = f"{demo_agent}: {last.counted} feedback, 1 revoked, 1 answered · getSummary"
    assert early in output
    assert f"demo agent: {late} {summary_text(last)}" in " ".join(output.split())


def test_a_port_in_use_stops_the_demo_before_it_touches_its_database(
    admin_url: str, database_url: str
) -> None:
    """The demo drops and creates its database at every start: with its port taken it must
    say so and leave the database as it was (here a test database standing in for it)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('from an earlier demo')")
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = subprocess.run(
            [sys.executable, "-m", "erc8004_backend", "demo", "--database-url", admin_url,
             "--database-name", str(name), "--port", str(port), "--seconds", "5"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert [line for line in finished.stderr.splitlines() if line.strip()] == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another program"
        " listens there: choose another port, with --port)"
    ]
    assert finished.stdout == ""
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("from an earlier demo",)]
