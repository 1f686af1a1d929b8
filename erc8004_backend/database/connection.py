"""Opening connections, with failures turned into one clear line."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg

from erc8004_backend.errors import Erc8004Error

# What a long-running part survives by reconnecting: the server went away or restarted.
RECONNECT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class DatabaseUnavailableError(Erc8004Error):
    """The database cannot be reached or refused the connection."""


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def database_name(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url).get("dbname") or "postgres"  # type: ignore[return-value]


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials as `url`, for another database."""
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


def connect(url: str, *, autocommit: bool = True, connect_timeout: int = 10) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.OperationalError as error:
        raise DatabaseUnavailableError(
            f"cannot connect to {redact_url(url)}: {describe_connection_error(error)}"
        ) from None
    except psycopg.ProgrammingError as error:  # malformed URL
        raise DatabaseUnavailableError(f"invalid database URL {redact_url(url)}: {error}") from None


def describe_connection_error(error: psycopg.Error) -> str:
    """libpq's message without its repeated prefixes and multi-line hints."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    # 'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'
    for prefix in ("connection failed: ", "connection is bad: "):
        message = message.removeprefix(prefix)
    if "failed: " in message:
        where, _, reason = message.rpartition("failed: ")
        message = f"{reason} ({where.strip().removeprefix('connection to ').strip()})"
    return message
