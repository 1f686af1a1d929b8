"""The demo's live view: database snapshots and deliveries become feed lines and counts."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console

from erc8004_backend.demo.view import DemoView, Entry, describe_event


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
