"""run_until_signalled: a long-running part's objects from its start-up are frozen."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from erc8004_backend.cli import signals


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_what_exists_once_a_part_has_started_is_frozen(
    monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setattr(signals, "STARTED_AFTER_SECONDS", 0.05)
    frozen: list[int] = []

    async def work(stop: asyncio.Event) -> None:
        frozen.append(gc.get_freeze_count())
        await asyncio.sleep(0.2)
        frozen.append(gc.get_freeze_count())

    await signals.run_until_signalled(work, "test")
    assert frozen[0] == 0
    assert frozen[1] > 1000  # the interpreter's and the imported modules' objects


async def test_a_part_that_ends_before_it_has_started_freezes_nothing(
    monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setattr(signals, "STARTED_AFTER_SECONDS", 0.05)

    async def work(stop: asyncio.Event) -> None:
        pass

    await signals.run_until_signalled(work, "test")
    await asyncio.sleep(0.1)
    assert gc.get_freeze_count() == 0
