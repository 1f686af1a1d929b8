"""/channels: the action types a trigger's actions may use, each with the JSON Schema of its
config (what the dashboard's trigger editor builds each channel's form from)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from erc8004_backend.actions.channels import CHANNELS
from erc8004_backend.api.dependencies import CurrentUser

router = APIRouter(prefix="/channels", tags=["triggers"])


class ChannelOut(BaseModel):
    action_type: str
    config_schema: dict[str, Any] = Field(
        description="The JSON Schema of the action's `config` (checked when a trigger is written)."
    )
    template_keys: list[str] = Field(description="The config's settings that are templates.")


# The schemas do not change while the process runs: made once.
_CHANNELS = [
    ChannelOut(
        action_type=spec.action_type,
        config_schema=spec.config_model.model_json_schema(),
        template_keys=list(spec.template_keys),
    )
    for spec in CHANNELS.values()
]


@router.get("")
async def list_channels(user: CurrentUser) -> list[ChannelOut]:
    """Every action type with the schema of its config, in the order the API lists them."""
    return _CHANNELS
