"""The demo in this process, as `erc8004 demo` runs it (real devnet, API, indexer, processor,
worker and local targets): while the scene plays, its view shows the agents and their
reputation moving; at the end they are what the API's code (agents/service.py) computes, and
the reputation threshold fired and was delivered once per crossing of the scene."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row
from rich.console import Console

from erc8004_backend.agents import service
from erc8004_backend.api.server import listen
from erc8004_backend.chain.config import DEVNET_CHAIN_ID
from erc8004_backend.cli.run import run_all
from erc8004_backend.config import Settings
from erc8004_backend.demo.runner import DemoOptions, run_demo
from erc8004_backend.demo.scenario import (
    DEMO_LENS,
    LOW_SCORE_CHAT,
    SCENE,
    SCENE_CLIENTS,
    NewcomerFeedback,
    reputation_trigger,
)
from erc8004_backend.demo.view import (
    AgentLine,
    DemoView,
    Entry,
    left_out_text,
    name_text,
    score_text,
    summary_text,
)
from tests.demo.test_scenario import demo_agent_summaries, expected_crossings

pytestmark = [pytest.mark.devnet, pytest.mark.slow]

# Half a second between two steps (the command's is one): the scene in about 11 s.
OPTIONS = DemoOptions(api_host="127.0.0.1", rate=2.0, step_seconds=0.5, scene_pause=600)
TIMEOUT = 90.0  # seconds for the setup and one play of the scene


def reputation_deliveries(entries: list[Entry]) -> list[str]:
    return [e.text for e in entries if e.kind == "delivered" and " fell from " in e.text]


def scene_done(entries: list[Entry], view: DemoView) -> bool:
    """Every step played, the demo agent's last summary shown, the reputation threshold's
    crossings delivered."""
    played = sum(e.kind == "note" and e.text.startswith("scene: ") for e in entries)
    demo = [line for line in view.agents if line.role == "demo agent"]
    final = demo_agent_summaries()[-1]
    return (
        played == len(SCENE)
        and bool(demo)
        and demo[0].summary == tuple(final)
        and len(reputation_deliveries(entries)) >= len(expected_crossings())
    )


async def test_the_view_shows_the_agents_reputation_moving(migrated_url: str) -> None:
    entries: list[Entry] = []
    view = DemoView(header=[], on_entry=entries.append)
    snapshots: list[list[AgentLine]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with listen("127.0.0.1", 0) as api_socket:
        demo = asyncio.create_task(
            run_demo(Settings(), migrated_url, api_socket, OPTIONS, view, run_all, stop)
        )
        try:
            deadline = loop.time() + TIMEOUT
            while not scene_done(entries, view):
                if demo.done():
                    demo.result()
                    pytest.fail("the demo stopped before the scene was played")
                assert loop.time() < deadline, [e.line() for e in entries][-30:]
                snapshots.append(list(view.agents))
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(demo, 60)

    # The view's last lines (read once the backend stopped) are what the API's code says.
    lines = {line.role: line for line in view.agents}
    assert set(lines) == {"demo agent", "newcomer", "busiest"}
    demo_agent, newcomer = lines["demo agent"].agent_id, lines["newcomer"].agent_id
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(
        migrated_url, autocommit=True, row_factory=dict_row
    ) as conn:
        for line in view.agents:
            detail = await service.get_agent(conn, DEVNET_CHAIN_ID, line.agent_id)
            assert detail is not None
            spec = await service.agent_reputation(
                conn, DEVNET_CHAIN_ID, line.agent_id, clients=SCENE_CLIENTS
            )
            lens = await service.agent_lens_reputation(
                conn, DEVNET_CHAIN_ID, line.agent_id, DEMO_LENS, now
            )
            explain = lens.result.explain
            assert (line.name, line.owner, line.feedback, line.revoked) == (
                detail.profile.registration.name, detail.profile.owner,
                detail.stats.feedback_count, detail.stats.revoked_count)  # fmt: skip
            assert line.summary == (spec.count, spec.value, spec.decimals)
            assert line.lens_score == lens.result.score
            assert line.lens_counted == explain.counted
            assert dict(line.lens_left_out) == {k: n for k, n in explain.excluded.items() if n}
            assert line.answered == lens.activity.responded_count
        jobs = await (await conn.execute(
            "SELECT count(DISTINCT j.event_id) AS fired,"
            " count(*) FILTER (WHERE j.status = 'succeeded') AS delivered, count(*) AS jobs"
            " FROM triggers AS t JOIN action_jobs AS j ON j.trigger_id = t.id"
            " WHERE t.name = %s", [reputation_trigger(demo_agent, SCENE_CLIENTS)["name"]],
        )).fetchone()  # fmt: skip

    # ... and what the scene makes them: the spec's summary, by its model, over the clients.
    assert lines["demo agent"].summary == tuple(demo_agent_summaries()[-1])
    assert lines["demo agent"].name == "Demo Agent"
    assert lines["demo agent"].owner == "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    assert (lines["demo agent"].revoked, lines["demo agent"].answered) == (1, 1)
    newcomer_scores = [step.score for step in SCENE if isinstance(step, NewcomerFeedback)]
    assert lines["newcomer"].summary == (
        len(newcomer_scores), sum(newcomer_scores) // len(newcomer_scores), 0)  # fmt: skip
    assert lines["newcomer"].name == "Newcomer Agent"
    # B and C rated the newcomer too: the lens counts their latest feedback, and leaves A's out.
    assert lines["demo agent"].lens_counted == 2
    assert dict(lines["demo agent"].lens_left_out)["untrusted_client"] > 0
    # Only the scene gives feedback from its clients: the busiest others have none of theirs.
    assert all(line.summary == (0, 0, 0) for line in view.agents if line.role == "busiest")

    # The rendering shows each agent with those numbers.
    console = Console(record=True, width=200, color_system=None)
    console.print(view.render())
    text = console.export_text()
    for line in view.agents:
        for cell in (f"#{line.agent_id} {name_text(line)}", summary_text(line.summary),
                     score_text(line.lens_score), left_out_text(line.lens_left_out)):  # fmt: skip
            assert cell in text, cell

    # The numbers moved while the scene played: the demo agent's summary went through many
    # values, early ones differing from the last, and so did its lens score.
    seen = [next(line for line in snapshot if line.agent_id == demo_agent)
            for snapshot in snapshots if any(line.agent_id == demo_agent for line in snapshot)]  # fmt: skip
    assert seen[0].summary != seen[-1].summary
    assert len({line.summary for line in seen}) >= 8
    assert len({line.lens_score for line in seen}) >= 3
    assert any(line.agent_id == newcomer for snapshot in snapshots for line in snapshot)
    # ... and the feed told each move of the scene's agents.
    told = [e.text for e in entries if e.kind == "agent" and e.text.startswith(f"#{demo_agent} ")]
    assert len(told) >= 8
    assert f"getSummary {summary_text(lines['demo agent'].summary)}" in told[-1]

    # The reputation threshold fired at each crossing, and each firing was delivered once.
    crossings = expected_crossings()
    assert jobs == {"fired": len(crossings), "delivered": len(crossings), "jobs": len(crossings)}
    assert reputation_deliveries(entries) == [
        f"telegram: chat {LOW_SCORE_CHAT}: Agent #{demo_agent} fell from {c.before} to {c.after}"
        f" ({c.count} feedback)" for c in crossings
    ]  # fmt: skip
