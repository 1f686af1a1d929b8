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
    ipfs_gateway: str = Field(
        default="https://ipfs.io/ipfs/",
        pattern=r"^https?://[^/?#]+",
        description="HTTP gateway for ipfs:// URIs; the CID and path are appended to it.",
    )
    registration_max_bytes: int = Field(
        default=256 * 1024,
        gt=0,
        description="Largest agent registration file accepted, in bytes.",
    )
    registration_fetch_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Total time allowed for fetching one registration file (all redirects).",
    )
    allow_private_urls: bool = Field(
        default=False,
        description="Let outbound requests reach private, loopback and link-local addresses"
        " (tests and the devnet); off, so user-supplied URLs cannot reach internal networks.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
