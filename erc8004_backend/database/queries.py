"""Named SQL queries kept in `.sql` files beside the code that runs them.

A file holds blocks that each start with a line `-- name --`; comment lines that follow
describe the query. Files are read once, when a module loads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources

from psycopg import sql

_HEADER = re.compile(r"^-- ([a-z_][a-z0-9_]*) --$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, bytes]:
    """Splits a query file into {name: query}. Queries are bytes, as psycopg takes them."""
    headers = list(_HEADER.finditer(text))
    queries: dict[str, bytes] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following else len(text)
        name = header.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = text[header.end() : end].strip().encode()
    return queries


def load_queries(package: str, filename: str) -> dict[str, bytes]:
    return parse_queries(resources.files(package).joinpath(filename).read_text("utf-8"))


def compose(query: bytes, **parts: sql.Composable) -> bytes:
    """`query` with each `{name}` in it written out as `parts[name]`. The parts are made from
    the code's own names (psycopg.sql quotes identifiers), never from input: a column list
    kept in one place, say, that several queries select."""
    return sql.SQL(query.decode()).format(**parts).as_bytes(None)


def identifiers(names: Iterable[str]) -> sql.Composable:
    """`a, b, c`: a list of column names, each quoted as an identifier."""
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)
