"""`erc8004 db doctor`'s checks that need no particular server."""

from __future__ import annotations

import pytest

from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS
from erc8004_backend.database.admin import Level, run_doctor
from erc8004_backend.database.connection import connect


@pytest.mark.parametrize(
    ("token_keys", "level"),
    [
        (DEVELOPMENT_TOKEN_KEYS, Level.WARN),
        # Rotated to a key of one's own, the development key kept for older rows: still
        # anyone can decrypt those.
        (f"own:{'A' * 43}=,{DEVELOPMENT_TOKEN_KEYS}", Level.WARN),
        (f"own:{'A' * 43}=", Level.OK),
    ],
)
def test_doctor_warns_while_the_development_key_is_among_the_keys(
    migrated_url: str, token_keys: str, level: Level
) -> None:
    with connect(migrated_url) as connection:
        checks = {c.name: c for c in run_doctor(connection, None, token_keys)}
    assert checks["token key"].level is level
