"""The actions tests' shared fixtures: a connection to the test's migrated database, and the
secret box that seals and opens credentials with the default settings' keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def box() -> SecretBox:
    return SecretBox.from_spec(Settings().token_keys)
