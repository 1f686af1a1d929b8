"""`loading`: import a command's modules with the garbage collector off.

Everything a command imports lives as long as the process, yet while it is imported the
collector walks it again and again (20 to 30 ms of the indexer's start). `erc8004` starts
with the collector off (`__main__.py`); the command line is loaded inside `loading`, and each
command loads what it runs with inside it too, where its help does not.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def loading() -> Iterator[None]:
    """The collector off inside; after, what was made frozen (out of its sight: a full
    collection no longer walks those objects) and the collector on."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
