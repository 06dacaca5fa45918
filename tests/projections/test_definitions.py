"""A read model whose definition (DDL) changed is rebuilt by its leader, side by side, up to its
own checkpoint, then followed live from there: nothing applied twice, nothing skipped, and no
side effect of an event before the checkpoint happens again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.eventstore.postgres import PostgresEventStore
from shared.projections.runner import ProjectionRunner, definition_hash
from tests.projections.sample import SampleProjection
from tests.projections.test_runner import counts, expected, fill


class SampleProjectionV2(SampleProjection):
    """The same fold with a changed table definition (one more column)."""

    ddl = SampleProjection.ddl.replace(
        "total bigint NOT NULL)", "total bigint NOT NULL, note text NOT NULL DEFAULT 'v2')"
    )


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=10)
    yield s
    await s.close()


async def follow(store: PostgresEventStore, runner: ProjectionRunner, last: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await runner.wait_for(last, timeout=60)
    stop.set()
    await task


async def effects(store: PostgresEventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM sample_rm.effects"))


async def built_from(store: PostgresEventStore) -> str:
    q = "SELECT ddl_hash FROM projections.definitions WHERE schema_name = 'sample_rm'"
    return str(await store.pool.fetchval(q))


async def test_a_changed_definition_is_rebuilt_up_to_the_checkpoint_then_followed(
    store: PostgresEventStore,
) -> None:
    first = await fill(store, 2, 3)
    await follow(store, ProjectionRunner(store, SampleProjection(), batch_size=2), first)
    assert await effects(store) == 6 and await built_from(store) == definition_hash(
        SampleProjection()
    )
    last = await fill(store, 2, 2, start=3)  # arrives while the old code is gone
    v2 = SampleProjectionV2()
    await follow(store, ProjectionRunner(store, v2, batch_size=2), last)
    assert await counts(store) == expected(2, 5)
    columns = await store.pool.fetch(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = 'sample_rm' AND table_name = 'counts'"""
    )
    assert "note" in {c["column_name"] for c in columns}
    assert await built_from(store) == definition_hash(v2)
    # Side effects: the 6 events before the checkpoint were replayed without them, the 4 after
    # it ran live, each once.
    assert await effects(store) == 4
    assert v2.replayed[0] is True and v2.replayed[-1] is False
    # Started again with the same definition: nothing is rebuilt.
    again = SampleProjectionV2()
    await follow(store, ProjectionRunner(store, again), last)
    assert again.replayed == []


async def test_a_schema_built_before_definitions_were_recorded_is_rebuilt_once(
    store: PostgresEventStore,
) -> None:
    last = await fill(store, 1, 4)
    await follow(store, ProjectionRunner(store, SampleProjection()), last)
    await store.pool.execute("DELETE FROM projections.definitions")
    projection = SampleProjection()
    await follow(store, ProjectionRunner(store, projection), last)
    assert projection.replayed == [True] * len(projection.replayed) and projection.replayed
    assert await counts(store) == expected(1, 4)
    assert await built_from(store) == definition_hash(projection)
