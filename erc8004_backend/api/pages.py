"""Keyset pagination cursors: the last row's (time, id), opaque to clients. Pages neither
skip nor repeat rows while new ones arrive."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from erc8004_backend.api.errors import ApiError

Key = TypeVar("Key")


def encode_cursor(at: datetime, key: object) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str, key: Callable[[str], Key]) -> tuple[datetime, Key]:
    """The (time, id) a cursor holds, the id parsed by `key`; 422 naming `cursor` if it is
    not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        at_text, separator, key_text = text.partition("|")
        at = datetime.fromisoformat(at_text)
        if not separator or at.tzinfo is None:
            raise ValueError(text)
        return at, key(key_text)
    except (ValueError, UnicodeError, binascii.Error):
        message = "not a cursor from this API (use next_cursor as given)"
        raise ApiError(
            422, f"cursor: {message}", details=[{"field": "cursor", "message": message}]
        ) from None
