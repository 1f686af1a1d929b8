"""What an action would send for a job's payload, rendered as the worker renders it, for
backtests ("what would have fired, and saying what"). Nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from erc8004_backend.actions.configs import (
    ActionConfigError,
    TelegramConfig,
    parse_action_config,
    render_json_template,
)
from erc8004_backend.actions.delivery import template_values
from erc8004_backend.actions.telegram import send_message_body


@dataclass(frozen=True)
class ActionPreview:
    action_id: str
    action_type: str
    priority: int
    text: str | None = None  # telegram: the message, escaped for its parse_mode
    body: Any = None  # rest: the JSON body of its body_template


@dataclass(frozen=True)
class _Renderable:
    action_id: str
    action_type: str
    priority: int
    template: Any  # a TelegramConfig, or a webhook's body template (JSON)


class ActionPreviews:
    """The Telegram messages and webhook bodies a trigger's actions would send.

    `actions`: rows (id, action_type, priority, config as stored), read once. Actions
    without a template of their own (MCP calls, webhooks that send the whole job or nothing)
    and configs that no longer parse have none. A webhook's URL is left out: it may hold a
    credential; its headers are stored sealed and are not read."""

    def __init__(self, actions: list[dict[str, Any]]) -> None:
        self._actions: list[_Renderable] = []
        for action in actions:
            kind, config = action["action_type"], action["config"]
            config = config if isinstance(config, dict) else {}
            template: Any = None
            if kind == "telegram":
                try:
                    template = parse_action_config("telegram", config)
                except ActionConfigError:
                    continue
            elif kind == "rest" and str(config.get("method", "POST")).upper() != "GET":
                template = config.get("body_template")
            if template is not None:
                self._actions.append(
                    _Renderable(str(action["id"]), kind, action["priority"], template)
                )

    def render(self, payload: dict[str, Any], explorer_url: str | None) -> list[ActionPreview]:
        """For a job of `payload` (as the processor makes it, decoded)."""
        values = template_values(payload, explorer_url)
        previews = []
        for action in self._actions:
            shown = ActionPreview(action.action_id, action.action_type, action.priority)
            if isinstance(action.template, TelegramConfig):
                text = send_message_body(action.template, values)["text"]
                previews.append(replace(shown, text=text))
            else:
                body = render_json_template(action.template, values)
                previews.append(replace(shown, body=body))
        return previews
