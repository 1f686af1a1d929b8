"""What the demo shows: events arriving, triggers firing, deliveries landing.

`DemoView` is plain state fed by the runner (database snapshots, the local targets' callbacks);
`render()` draws it for a rich Live display in a terminal, and `on_entry` receives each new
line as it happens, which is what is printed when the output is not a terminal.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STYLES = {"event": "cyan", "fired": "bold yellow", "delivered": "bold green", "note": "magenta",
          "failed": "bold red"}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    at: float  # time.time()
    kind: str  # a key of STYLES
    text: str

    def line(self) -> str:
        clock = datetime.fromtimestamp(self.at).strftime("%H:%M:%S")
        return f"{clock} {self.kind:<9} {self.text}"


@dataclass
class TriggerCount:
    name: str
    channels: str
    fired: int = 0  # events that fired it
    delivered: int = 0  # its actions delivered
    failed: int = 0  # its actions given up on


@dataclass
class DemoView:
    header: list[str]
    on_entry: Callable[[Entry], None] | None = None
    started: float = field(default_factory=time.time)
    events: Counter[str] = field(default_factory=Counter)
    head: int | None = None
    triggers: dict[str, TriggerCount] = field(default_factory=dict)
    deliveries: Counter[str] = field(default_factory=Counter)  # by channel
    feed: deque[Entry] = field(default_factory=lambda: deque(maxlen=16))

    def add(self, kind: str, text: str) -> None:
        entry = Entry(time.time(), kind, text)
        self.feed.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def new_events(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.events[row["event_type"]] += 1
            self.add("event", describe_event(row))

    def trigger_counts(self, rows: Sequence[dict[str, Any]]) -> None:
        """A snapshot of every trigger's counts; growth becomes feed lines."""
        for row in rows:
            key = str(row["id"])
            count = self.triggers.get(key) or TriggerCount(row["name"], row["channels"])
            self.triggers[key] = count
            if row["fired"] > count.fired:
                times = row["fired"] - count.fired
                self.add("fired", f"{count.name}" + (f" x{times}" if times > 1 else ""))
            if row["failed"] > count.failed:
                self.add("failed", f"{count.name}: an action was given up on (erc8004 jobs dead)")
            count.fired, count.delivered, count.failed = (
                row["fired"],
                row["delivered"],
                row["failed"],
            )

    def delivered(self, channel: str, text: str) -> None:
        self.deliveries[channel] += 1
        self.add("delivered", f"{channel}: {text}")

    def render(self) -> RenderableType:
        uptime = int(time.time() - self.started)
        title = f"ERC-8004 demo · {uptime // 60:02d}:{uptime % 60:02d}"
        if self.head is not None:
            title += f" · devnet block {self.head}"
        header = Text("\n".join(self.header), style="dim")

        counts = [f"[cyan]{name}[/] {count}" for name, count in sorted(self.events.items())]
        events = Text.from_markup("   ".join(counts) or "[dim]waiting for the first block…[/]")

        triggers = Table(expand=True, box=None, header_style="bold")
        triggers.add_column("trigger")
        triggers.add_column("sends")
        triggers.add_column("fired", justify="right")
        triggers.add_column("delivered", justify="right")
        triggers.add_column("failed", justify="right")
        for count in self.triggers.values():
            triggers.add_row(count.name, count.channels, str(count.fired), str(count.delivered),
                             f"[red]{count.failed}[/]" if count.failed else "0")  # fmt: skip

        feed = Group(*(Text(entry.line(), style=STYLES.get(entry.kind, ""), no_wrap=True,
                             overflow="ellipsis") for entry in self.feed))  # fmt: skip
        channels = ", ".join(f"{name} {n}" for name, n in sorted(self.deliveries.items()))
        return Group(
            Panel(header, title=title, title_align="left"),
            Panel(events, title=f"events indexed: {sum(self.events.values())}",
                  title_align="left"),
            Panel(triggers, title="triggers", title_align="left"),
            Panel(feed, title=f"live · deliveries received: {channels or 'none yet'}",
                  title_align="left", subtitle="Ctrl-C stops the demo", subtitle_align="right"),
        )  # fmt: skip

    def summary(self) -> Table:
        table = Table(title="demo summary", header_style="bold")
        for column in ("trigger", "sends", "fired", "delivered", "failed"):
            table.add_column(column, justify="left" if column in ("trigger", "sends") else "right")
        for count in self.triggers.values():
            table.add_row(count.name, count.channels, str(count.fired), str(count.delivered),
                          str(count.failed))  # fmt: skip
        return table


def describe_event(row: dict[str, Any]) -> str:
    """One event in a line: what, which agent, the values people look at, where."""
    parts = [row["event_type"]]
    if row.get("agent_id") is not None:
        parts.append(f"agent {row['agent_id']}")
    for name in ("score", "response", "tag1"):
        value = row.get(name)
        if value not in (None, ""):
            parts.append(f"{name} {value}")
    parts.append(f"(block {row['block_number']})")
    return " ".join(parts)
