"""Projecting a stored log in random batches, for the read-model batch-boundary property tests
(contacts and orders): a fresh database per hypothesis example, and a projection that reports
every failed batch instead of letting the runner quietly retry it event by event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
from hypothesis import strategies as st

from shared.eventstore import RecordedEvent
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext, Projection
from shared.projections.runner import ProjectionRunner
from shared.testing.events import read_everything
from shared.testing.postgres import DatabaseFactory

# Batch sizes, used in turn until the log is consumed: from one event per batch to large ones.
batch_sizes = st.lists(st.integers(1, 40), min_size=1, max_size=6)


@asynccontextmanager
async def fresh_store(databases: DatabaseFactory) -> AsyncIterator[PostgresEventStore]:
    """A store on a migrated database of its own, dropped afterwards."""
    dsn = await databases.create()
    store = await PostgresEventStore.connect(dsn, max_size=4)
    try:
        yield store
    finally:
        await store.close()
        admin = await asyncpg.connect(databases.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE "{urlsplit(dsn).path[1:]}" WITH (FORCE)')
        finally:
            await admin.close()


class Strict:
    """The projection, remembering every failed batch: the runner would retry it event by
    event, which hides exactly the batch dependence under test."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name, self.schema, self.ddl = inner.name, inner.schema, inner.ddl
        self.categories, self.types = inner.categories, inner.types
        self.errors: list[BaseException] = []

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        try:
            await self.inner.apply(conn, events, ctx)
        except Exception as exc:
            self.errors.append(exc)
            raise


async def project_in_batches(
    store: PostgresEventStore, projection: Projection, sizes: Sequence[int]
) -> list[RecordedEvent]:
    """Apply the whole stored log to ``projection`` through ProjectionRunner.process, in batches
    of ``sizes`` taken in turn; fail on any failed batch or parked event. Returns the log."""
    strict = Strict(projection)
    runner = ProjectionRunner(store, strict, retries=1, retry_delay=0)
    events = await read_everything(store, categories=projection.categories)
    lo, n = 0, 0
    while lo < len(events):
        hi = min(len(events), lo + sizes[n % len(sizes)])
        await runner.process(events[lo:hi], events[hi - 1].position)
        lo, n = hi, n + 1
    assert strict.errors == []
    assert await store.pool.fetchval("SELECT count(*) FROM projections.parked") == 0
    return events
