"""The agents the demo shows, read the way the API's /agents routes read them: through
agents/service.py (get_agent, agent_reputation, agent_lens_reputation, search_agents), on the
demo's database connection.

Shown: the scene's agents (the demo agent, and the newcomer the scene registered last) and the
agents with the most feedback besides them, which the background activity keeps busy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from erc8004_backend.agents import service
from erc8004_backend.demo.scenario import CLIENT_NAMES, DEMO_LENS, SCENE_CLIENTS
from erc8004_backend.demo.view import AgentLine, AgentRole

BUSIEST = 2  # other agents shown beside the scene's


@dataclass
class ShownAgents:
    """Which agents the view shows; the runner sets the scene's as the scene makes them."""

    demo_agent: int | None = None
    newcomer: int | None = None

    def scene(self) -> list[tuple[int, AgentRole]]:
        shown: list[tuple[int, AgentRole]] = []
        if self.demo_agent is not None:
            shown.append((self.demo_agent, "demo agent"))
        if self.newcomer is not None:
            shown.append((self.newcomer, "newcomer"))
        return shown


async def read_agents(
    conn: psycopg.AsyncConnection[Any], chain_id: int, shown: ShownAgents
) -> list[AgentLine]:
    """The shown agents' lines, all from one snapshot of the database (so that no line mixes
    numbers from before and after an indexer's commit); an agent not indexed yet is left out.
    `conn` must be in autocommit mode (the demo's watcher's is)."""
    scene = shown.scene()
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        busiest = await service.search_agents(conn, service.AgentQuery(
            chain_id=chain_id, sort="feedback_count", limit=BUSIEST + len(scene)))  # fmt: skip
        scene_ids = {agent_id for agent_id, _ in scene}
        others = [item.agent_id for item in busiest.items if item.agent_id not in scene_ids]
        chosen = [*scene, *((agent_id, "busiest") for agent_id in others[:BUSIEST])]
        now = datetime.now(UTC)
        lines = [await read_agent(conn, chain_id, agent_id, role, now)
                 for agent_id, role in chosen]  # fmt: skip
    return [line for line in lines if line is not None]


async def read_agent(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    role: AgentRole,
    now: datetime,
) -> AgentLine | None:
    """One agent's line; None when no event names it yet."""
    detail = await service.get_agent(conn, chain_id, agent_id)
    if detail is None:
        return None
    spec = await service.agent_reputation(conn, chain_id, agent_id, clients=SCENE_CLIENTS)
    report = await service.agent_lens_reputation(conn, chain_id, agent_id, DEMO_LENS, now)
    explain = report.result.explain
    return AgentLine(
        agent_id=agent_id,
        role=role,
        name=detail.profile.registration.name,
        file_status=detail.profile.registration.status,
        owner=detail.profile.owner,
        feedback=detail.stats.feedback_count,
        revoked=detail.stats.revoked_count,
        answered=report.activity.responded_count,
        summary=(spec.count, spec.value, spec.decimals),
        lens_score=report.result.score,
        lens_counted=explain.counted,
        lens_left_out=tuple((reason, count) for reason, count in explain.excluded.items() if count),
    )


def agents_title() -> str:
    """What the agents' numbers are over."""
    names = ", ".join(CLIENT_NAMES.values())
    return (f"agents · getSummary over the scene's clients {names} · lens: clients who rated"
            f" ≥ {DEMO_LENS.min_agents} agents, one vote each ({DEMO_LENS.vote})")  # fmt: skip
