"""Subscribers are woken by the commits of what they read: a commit names its streams'
categories (locally, and to other processes in the NOTIFY's payload), and a subscriber
reading other categories is not sent to read nothing; a subscriber with no category filter,
and a commit that names none, still wake everyone. Counted in reads, not in time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore

COMMITS = 20


@pytest.fixture
async def stores(dsn: str) -> AsyncIterator[tuple[PostgresEventStore, PostgresEventStore]]:
    """Two stores on one database: a reader and a writer in "two processes" (NOTIFY between)."""
    reader = await PostgresEventStore.connect(dsn, max_size=4)
    writer = await PostgresEventStore.connect(dsn, max_size=4)
    yield reader, writer
    await writer.close()
    await reader.close()


class Counting:
    """Counts the reads of the subscription with ``categories`` and collects what it is given."""

    def __init__(self, store: PostgresEventStore, categories: list[str] | None) -> None:
        self.reads, self.seen, self.categories = 0, list[str](), categories
        original = store.read_all

        async def read_all(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("categories") == categories:
                self.reads += 1
            return await original(*args, **kwargs)

        store.read_all = read_all  # type: ignore[method-assign]


async def _follow(store: PostgresEventStore, counting: Counting) -> None:
    async for page in store.subscribe(0, idle_timeout=30, categories=counting.categories):
        counting.seen.extend(e.stream for e in page.events)


async def _writes(writer: PostgresEventStore, category: str) -> None:
    for n in range(COMMITS):  # one NOTIFY each: the window that gathers them has passed
        await writer.append(f"{category}-{n}", [NewEvent("t.v1.T", {})], StreamState.ANY)
        await asyncio.sleep(0.02)


async def _until(check: Any) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout=10)


@pytest.mark.parametrize("local", [False, True])
async def test_a_subscriber_is_woken_only_by_the_categories_it_reads(
    stores: tuple[PostgresEventStore, PostgresEventStore], local: bool
) -> None:
    reader, writer = stores
    if local:  # the same process: woken directly, not through NOTIFY
        writer = reader
    alpha, everything = Counting(reader, ["alpha"]), Counting(reader, None)
    tasks = [
        asyncio.create_task(_follow(reader, alpha)),
        asyncio.create_task(_follow(reader, everything)),
    ]
    try:
        await asyncio.sleep(0.2)  # both caught up, waiting
        alpha.reads = everything.reads = 0
        await _writes(writer, "beta")
        await _until(lambda: len(everything.seen) == COMMITS)
        assert alpha.seen == [] and alpha.reads <= 2  # not sent to read nothing
        assert everything.reads >= COMMITS // 2  # woken by each (a few may be gathered)
        await writer.append("alpha-1", [NewEvent("t.v1.T", {})], StreamState.NO_STREAM)
        await _until(lambda: alpha.seen == ["alpha-1"])
        writer.committed(await writer.head_position())  # names no category: wakes everyone
        before = alpha.reads
        await _until(lambda: alpha.reads > before)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
