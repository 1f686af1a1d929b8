"""Named SQL queries kept in `.sql` files beside the code that runs them.

A file holds blocks that each start with a line `-- name --`; comment lines that follow
describe the query. Files are read once, when a module loads them.
"""

from __future__ import annotations

import re
from importlib import resources

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
