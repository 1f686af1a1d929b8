"""What an action would send for a job's payload, rendered as the worker renders it, for
backtests ("what would have fired, and saying what"). Nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from erc8004_backend.actions.channel import Preview
from erc8004_backend.actions.channels import CHANNELS
from erc8004_backend.actions.delivery import template_values


@dataclass(frozen=True)
class ActionPreview:
    action_id: str
    action_type: str
    priority: int
    text: str | None = None  # telegram: the message, escaped for its parse_mode
    body: Any = None  # rest: the JSON body of its body_template


class ActionPreviews:
    """The Telegram messages and webhook bodies a trigger's actions would send.

    `actions`: rows (id, action_type, priority, config as stored), read once. Actions
    without a message of their own (MCP calls, webhooks that send the whole job or nothing)
    and configs that no longer parse have none (each channel's `preview` says)."""

    def __init__(self, actions: list[dict[str, Any]]) -> None:
        self._actions = [
            action for action in actions if getattr(CHANNELS.get(action["action_type"]),
                                                    "preview", None)
        ]  # fmt: skip

    def render(self, payload: dict[str, Any], explorer_url: str | None) -> list[ActionPreview]:
        """For a job of `payload` (as the processor makes it, decoded)."""
        values = template_values(payload, explorer_url)
        previews = []
        for action in self._actions:
            preview = CHANNELS[action["action_type"]].preview
            config = action["config"] if isinstance(action["config"], dict) else {}
            shown: Preview | None = preview(config, values) if preview else None
            if shown is not None:
                previews.append(ActionPreview(str(action["id"]), action["action_type"],
                                              action["priority"], shown.text,
                                              shown.body))  # fmt: skip
        return previews
