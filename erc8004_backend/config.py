"""Settings from the environment (and an optional .env file), each with a safe default."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.outbound import IPNetwork, parse_networks

# The documented development key for MCP tokens and webhook secrets (see the README). Seed
# data is encrypted with it; production deployments set ERC8004_TOKEN_KEYS to their own.
DEVELOPMENT_TOKEN_KEYS = "dev:ZXJjODAwNC1iYWNrZW5kIGRldmVsb3BtZW50IGtleSE="  # noqa: S105 (public)
DEVELOPMENT_KEY = base64.b64decode(DEVELOPMENT_TOKEN_KEYS.partition(":")[2])
# A host name or IP address (IPv6 in brackets), with an optional port: an RFC 3986 authority
# without user information, as EIP-4361 messages name their domain.
INSTANCE_NAME_PATTERN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)


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
    allow_dev_key: bool = Field(
        default=False,
        description="Let `erc8004 api` and `erc8004 run` listen on an address other than"
        " loopback although ERC8004_TOKEN_KEYS holds the public development key.",
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
    allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDR blocks outbound requests may reach even though they"
        " are private (an internal webhook receiver, say), e.g. '10.1.2.0/24'.",
    )
    telegram_bot_token: SecretStr | None = Field(
        default=None, description="The Telegram bot that sends `telegram` actions."
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org",
        pattern=r"^https?://[^/?#]+",
        description="Base URL of the Telegram Bot API (a local server speaking it, in tests).",
    )
    telegram_rate_limits: bool = Field(
        default=True,
        description="Keep to Telegram's limits across workers: 30 messages a second per bot,"
        " one a second per chat, 20 a minute per group (off for a local stand-in).",
    )
    smtp_host: str | None = Field(
        default=None,
        description="The SMTP server that sends `email` actions; unset: email actions fail,"
        " naming this setting.",
    )
    smtp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Its port; unset: 587 for starttls, 465 for tls, 25 for none.",
    )
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls: upgrade a plain connection (refused if the server cannot);"
        " tls: TLS from the start (implicit TLS); none: plain text, for a relay on the host.",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if it needs one.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str | None = Field(
        default=None,
        description="The address email actions are sent from (one the SMTP server lets this"
        " login send as); actions choose the display name only.",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="PEM certificates to verify the SMTP server with instead of the system's"
        " (a server with an internal CA).",
    )
    smtp_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds an SMTP command may take."
    )
    smtp_max_connections: int = Field(
        default=4,
        gt=0,
        le=1000,
        description="SMTP connections one worker process opens at once (a message each).",
    )
    pagerduty_events_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        pattern=r"^https?://[^/?#]+",
        description="PagerDuty's Events API v2 endpoint (a local server speaking it, in tests).",
    )
    worker_concurrency: int = Field(
        default=64, gt=0, le=10_000, description="Deliveries in flight per worker process."
    )
    worker_per_account: int | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="One account's share of a worker process's deliveries in flight (default:"
        " three quarters of the concurrency): beyond it, an account gets only the slots no other"
        " account's due job wants.",
    )
    worker_lease_seconds: float = Field(
        default=120.0,
        ge=2,
        description="How long a claimed job is a worker's; a job whose worker died is taken"
        " again after it. Every delivery is cut off before its lease ends.",
    )
    retry_initial_seconds: float = Field(
        default=2.0, gt=0, description="Wait before the second attempt of a failed delivery."
    )
    retry_max_seconds: float = Field(
        default=600.0, gt=0, description="Longest wait between attempts (backoff doubles up to it)."
    )
    response_max_bytes: int = Field(
        default=64 * 1024, gt=0, description="Largest response body read from an action's target."
    )

    migrations_dir: Path = Field(
        default=Path("database/migrations"),
        description="The migration files; /ready compares the database with them.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `erc8004 api` listens on.")
    api_port: int = Field(default=8000, ge=0, le=65535, description="Port of `erc8004 api`.")
    instance_name: str | None = Field(
        default=None,
        pattern=f"^{INSTANCE_NAME_PATTERN}$",
        description="This deployment's name (host[:port]) in the texts owners sign for agents'"
        " MCP tokens; unset: the Host the client called.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="Signs access tokens (at least 32 characters). Unset: a random one per"
        " process, so tokens stop working when it restarts and differ between processes.",
    )
    jwt_lifetime_minutes: int = Field(
        default=60, gt=0, le=60 * 24 * 30, description="How long an access token is valid."
    )
    bcrypt_rounds: int = Field(
        default=12, ge=4, le=16, description="Cost of password hashes (each step doubles it)."
    )
    cors_origins: str = Field(
        default="",
        description="Comma-separated origins browsers may call the API from ('*' for any);"
        " empty: no cross-origin access.",
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest request body the API accepts."
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses or networks of reverse proxies in front of the API (comma"
        " separated, e.g. 127.0.0.1 or 10.0.0.0/8): from these, the client's address is read"
        " from X-Forwarded-For and the scheme from X-Forwarded-Proto. Empty: the connection's"
        " own address, which behind a proxy is the proxy's for every client (one rate limit"
        " for all).",
    )
    rate_limit_user: str = Field(
        default="600/minute", description="Requests per signed-in user (limits' notation)."
    )
    rate_limit_ip: str = Field(
        default="1200/minute", description="Requests per client address (limits' notation)."
    )
    rate_limit_login: str = Field(
        default="20/minute",
        description="Login and registration attempts per client address (limits' notation).",
    )
    public_reads: bool = Field(
        default=False,
        description="Serve the agents routes (public chain data) without signing in too, under"
        " rate_limit_public per client address.",
    )
    rate_limit_public: str = Field(
        default="60/minute",
        description="Requests per client address to the agents routes without signing in,"
        " when public_reads is on (limits' notation).",
    )

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("rate_limit_user", "rate_limit_ip", "rate_limit_login", "rate_limit_public")
    @classmethod
    def _rate_limit_parses(cls, value: str, info: ValidationInfo) -> str:
        # Settings validate their defaults too; those parse (tests/test_config.py), and
        # importing limits for them would cost every command's start 20 ms.
        if info.field_name and value == cls.model_fields[info.field_name].default:
            return value
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit like '600/minute' or '10/second;1000/hour'"
            ) from None
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        try:
            parse_networks(value)
        except Erc8004Error as error:
            raise ValueError(str(error)) from None
        return value

    @property
    def allowed_ip_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.allowed_networks)

    @property
    def uses_development_key(self) -> bool:
        return holds_development_key(self.token_keys)


def holds_development_key(token_keys: str) -> bool:
    """Whether a ERC8004_TOKEN_KEYS value holds the public development key, under any id:
    what it encrypts (or once encrypted) anyone can decrypt."""
    for item in token_keys.split(","):
        try:
            key = base64.b64decode(item.partition(":")[2].strip(), validate=True)
        except binascii.Error:
            continue  # SecretBox.from_spec says what is wrong with it
        if key == DEVELOPMENT_KEY:
            return True
    return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
