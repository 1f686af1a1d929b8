"""The demo's live view: database snapshots and deliveries become feed lines and counts."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console

from erc8004_backend.demo.view import (
    AgentLine,
    AgentRole,
    DemoView,
    Entry,
    describe_event,
    score_text,
)


def snapshot(fired: int, delivered: int, failed: int = 0) -> list[dict[str, object]]:
    return [{"id": "t1", "name": "Refund requests", "channels": "telegram + rest",
             "fired": fired, "delivered": delivered, "failed": failed}]  # fmt: skip


def test_growth_between_snapshots_becomes_feed_lines() -> None:
    printed: list[Entry] = []
    view = DemoView(header=["devnet http://127.0.0.1:1"], on_entry=printed.append)
    view.trigger_counts(snapshot(0, 0))
    assert printed == []
    view.trigger_counts(snapshot(1, 2))
    view.trigger_counts(snapshot(3, 6))
    view.trigger_counts(snapshot(3, 6, failed=1))
    assert [(e.kind, e.text) for e in printed] == [
        ("fired", "Refund requests"),
        ("fired", "Refund requests x2"),
        ("failed", "Refund requests: an action was given up on (erc8004 jobs dead)"),
    ]
    count = view.triggers["t1"]
    assert (count.fired, count.delivered, count.failed) == (3, 6, 1)


def test_events_and_deliveries_are_counted() -> None:
    view = DemoView(header=[])
    view.new_events([
        {"event_type": "NewFeedback", "agent_id": Decimal(7), "score": Decimal("45.5"),
         "response": None, "tag1": "refund", "block_number": 12},
        {"event_type": "Registered", "agent_id": Decimal(8), "score": None, "response": None,
         "tag1": None, "block_number": 13},
    ])  # fmt: skip
    view.delivered("webhook", "POST /refund-alerts (signature ok)")
    assert view.events == {"NewFeedback": 1, "Registered": 1}
    assert view.deliveries == {"webhook": 1}
    assert [e.kind for e in view.feed] == ["event", "event", "delivered"]


def test_describe_event_names_the_values_people_look_at() -> None:
    row = {"event_type": "ValidationResponse", "agent_id": Decimal(3), "score": None,
           "response": 50, "tag1": None, "block_number": 99}  # fmt: skip
    assert describe_event(row) == "ValidationResponse agent 3 response 50 (block 99)"
    row = {"event_type": "NewFeedback", "agent_id": Decimal(3), "score": Decimal(90),
           "tag1": "", "block_number": 5}  # fmt: skip
    assert describe_event(row) == "NewFeedback agent 3 score 90 (block 5)"


def test_render_shows_the_header_counts_triggers_and_feed() -> None:
    view = DemoView(header=["REST API http://127.0.0.1:8000/api/v1"])
    view.head = 42
    view.trigger_counts(snapshot(2, 4))
    view.delivered("telegram", "chat 1: hello")
    console = Console(record=True, width=120, color_system=None)
    console.print(view.render())
    text = console.export_text()
    for expected in ("ERC-8004 demo", "devnet block 42", "REST API http://127.0.0.1:8000",
                     "Refund requests", "telegram + rest", "delivered telegram: chat 1: hello",
                     "deliveries received: telegram 1", "events indexed: 0"):  # fmt: skip
        assert expected in text, expected
    console.print(view.summary())
    assert "demo summary" in console.export_text()


def agent(agent_id: int, role: AgentRole, summary: tuple[int, int, int], score: str | None,
          feedback: int = 3, name: str | None = "Demo Agent") -> AgentLine:  # fmt: skip
    return AgentLine(
        agent_id=agent_id, role=role, name=name, file_status="fetched" if name else "failed",
        owner="0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", feedback=feedback, revoked=1,
        answered=1, summary=summary, lens_score=None if score is None else Decimal(score),
        lens_counted=2, lens_left_out=(("revoked", 1), ("untrusted_client", 5)),
    )  # fmt: skip


def test_the_scene_agents_moving_become_feed_lines() -> None:
    printed: list[Entry] = []
    view = DemoView(header=[], on_entry=printed.append)
    busy = agent(3, "busiest", (0, 0, 0), "12.5", name=None)
    view.agent_lines([agent(9, "demo agent", (7, 61, 0), "40"), busy])
    view.agent_lines([agent(9, "demo agent", (7, 61, 0), "40"), busy])  # nothing moved
    view.agent_lines([agent(9, "demo agent", (8, 57, 0), "30.000000000000000000", feedback=4),
                      agent(3, "busiest", (0, 0, 0), "99", feedback=9, name=None)])  # fmt: skip
    # The busiest agents move all the time: the panel shows them, the feed does not.
    assert [(e.kind, e.text) for e in printed] == [
        ("agent", "#9 Demo Agent (owner 0xf39f…2266): 3 feedback, 1 revoked, 1 answered"
                  " · getSummary (7, 61, 0) · lens 40 (2 counted, left out: revoked 1,"
                  " untrusted 5)"),
        ("agent", "#9 Demo Agent (owner 0xf39f…2266): 4 feedback, 1 revoked, 1 answered"
                  " · getSummary (8, 57, 0) · lens 30 (2 counted, left out: revoked 1,"
                  " untrusted 5)"),
    ]  # fmt: skip
    assert [line.agent_id for line in view.agents] == [9, 3]
    assert view.agents[1].feedback == 9


def test_render_and_summary_show_the_agents() -> None:
    view = DemoView(header=[], agents_title="agents · getSummary over the scene's clients")
    console = Console(record=True, width=160, color_system=None)
    console.print(view.render())
    assert "waiting for the demo agent to be indexed" in console.export_text()
    view.agent_lines([agent(9, "demo agent", (14, 46, 0), "28.500000000000000000"),
                      agent(3, "busiest", (0, 0, 0), None, name=None)])  # fmt: skip
    console.print(view.render())
    text = console.export_text()
    for expected in ("agents · getSummary over the scene's clients", "#9 Demo Agent",
                     "0xf39f…2266", "(14, 46, 0)", "28.5", "revoked 1, untrusted 5",
                     "#3 (registration file unreadable)", "(0, 0, 0)"):  # fmt: skip
        assert expected in text, expected
    console.print(view.summary())
    text = console.export_text()
    assert "demo agent: #9 Demo Agent (owner 0xf39f…2266): 3 feedback" in text
    assert "busiest: #3 (registration file unreadable)" in text


def test_scores_show_two_places_at_most() -> None:
    assert [score_text(None if s is None else Decimal(s)) for s in (
        None, "40.000000000000000000", "32.500000000000000000", "22.666666666666666667",
        "-3")] == ["—", "40", "32.5", "22.67", "-3"]  # fmt: skip
