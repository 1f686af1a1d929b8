"""Settings from the environment (and an optional .env file), each with a safe default."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The documented development key for MCP tokens and webhook secrets (see the README). Seed
# data is encrypted with it; production deployments set ERC8004_TOKEN_KEYS to their own.
DEVELOPMENT_TOKEN_KEYS = "dev:ZXJjODAwNC1iYWNrZW5kIGRldmVsb3BtZW50IGtleSE="  # noqa: S105 (public)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERC8004_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "ERC8004_DATABASE_URL"),
        description="PostgreSQL URL; without one, an embedded server is started.",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("erc8004-backend")),
        description="Where the embedded PostgreSQL keeps its data.",
    )
    token_keys: str = Field(
        default=DEVELOPMENT_TOKEN_KEYS,
        description="Comma-separated KEY_ID:BASE64_32_BYTES; the first key encrypts.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
