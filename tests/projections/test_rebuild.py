"""Side-by-side rebuilds beside a running leader (an operator's, through the Admin API): one at
a time, resumable after an interruption, stopping at the live checkpoint so that a projection
whose replay does less than its live run (an engine) loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.leaders import REBUILD, holders
from shared.projections.rebuild import Progress, RebuildBusy, rebuild_into
from shared.projections.runner import ProjectionRunner
from tests.projections.sample import SampleProjection
from tests.projections.sample_engine import ECHO, SampleEngine
from tests.projections.test_runner import counts, expected, fill

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=12)
    yield s
    await s.close()


async def live_rebuild(
    store: PostgresEventStore, projection: object, seen: list[Progress] | None = None, **kw: object
) -> int:
    p: object = projection
    return await rebuild_into(
        store,
        store.pool,
        store.dsn,
        p,  # type: ignore[arg-type]
        p.name,  # type: ignore[attr-defined]
        p.schema,  # type: ignore[attr-defined]
        live=True,
        progress=(seen.append if seen is not None else None),
        **kw,  # type: ignore[arg-type]
    )


async def test_a_live_rebuild_beside_a_running_leader_under_writes_loses_and_repeats_nothing(
    store: PostgresEventStore,
) -> None:
    first = await fill(store, 4, 30)
    leader = ProjectionRunner(store, SampleProjection(slow=0.002), batch_size=7)
    stop = asyncio.Event()
    task = asyncio.create_task(leader.run(stop))
    await leader.wait_for(first, timeout=30)
    writing = asyncio.create_task(fill(store, 4, 30, start=30))
    seen: list[Progress] = []
    position = await live_rebuild(store, SampleProjection(), seen, batch_size=9)
    last = await writing
    await leader.wait_for(last, timeout=60)
    stop.set()
    await task
    # Every event folded exactly once across the switch (a repeat or a gap changes a count).
    assert await counts(store) == expected(4, 60)
    assert seen[-1].phase == "done" and seen[-1].position == position
    assert any(p.phase == "catching_up" and p.applied > 0 for p in seen)
    assert (
        await store.pool.fetchval(
            "SELECT count(*) FROM projections.checkpoints WHERE name = 'sample#rebuild'"
        )
        == 0
    )


async def test_one_rebuild_at_a_time(store: PostgresEventStore) -> None:
    last = await fill(store, 2, 50)
    await ProjectionRunner(store, SampleProjection()).catch_up(last)
    first = asyncio.create_task(live_rebuild(store, SampleProjection(slow=0.2), batch_size=5))
    while not await holders(store.pool, REBUILD, ["sample"]):
        await asyncio.sleep(0.01)
    with pytest.raises(RebuildBusy):
        await live_rebuild(store, SampleProjection(), wait=False)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_an_interrupted_rebuild_resumes_from_its_scratch_checkpoint(
    store: PostgresEventStore,
) -> None:
    last = await fill(store, 3, 40)
    await ProjectionRunner(store, SampleProjection()).catch_up(last)
    seen: list[Progress] = []
    first = asyncio.create_task(
        live_rebuild(store, SampleProjection(slow=0.02), seen, batch_size=10)
    )
    while not any(p.position > 0 for p in seen):
        await asyncio.sleep(0.01)
    first.cancel()  # as good as a crash: the scratch schema and its checkpoint stay
    with pytest.raises(asyncio.CancelledError):
        await first
    scratch = await store.pool.fetchval(
        "SELECT position FROM projections.checkpoints WHERE name = 'sample#rebuild'"
    )
    assert 0 < scratch < last
    again: list[Progress] = []
    projection = SampleProjection()
    await live_rebuild(store, projection, again, batch_size=10)
    assert again[0].resumed_from == scratch
    assert again[-1].applied < 120  # only what the first attempt had not done
    assert await counts(store) == expected(3, 40)


async def test_a_scratch_schema_of_another_definition_is_not_resumed(
    store: PostgresEventStore,
) -> None:
    last = await fill(store, 2, 10)
    await ProjectionRunner(store, SampleProjection()).catch_up(last)
    await store.pool.execute("CREATE SCHEMA sample_rm__next")
    await store.pool.execute("CREATE TABLE sample_rm__next.counts (junk int)")
    await store.pool.execute(
        "INSERT INTO projections.checkpoints (name, position) VALUES ('sample#rebuild', $1)", last
    )
    seen: list[Progress] = []
    await live_rebuild(store, SampleProjection(), seen)
    assert seen[0].resumed_from == 0
    assert await counts(store) == expected(2, 10)


async def test_an_engine_rebuilt_at_the_live_checkpoint_keeps_what_it_appended_beyond_it(
    store: PostgresEventStore,
) -> None:
    """The live engine's last batch appended echoes after its checkpoint; replay stops at the
    checkpoint, and the live engine ignores its own echoes: the switch must fold them in."""
    last = await fill(store, 3, 4)
    engine = SampleEngine(store)
    await ProjectionRunner(store, engine, batch_size=5).catch_up(last)
    checkpoint = await store.pool.fetchval(
        "SELECT position FROM projections.checkpoints WHERE name = 'sample-engine'"
    )
    beyond = await store.pool.fetchval(
        "SELECT count(*) FROM eventstore.events WHERE type = $1 AND position > $2", ECHO, checkpoint
    )
    assert checkpoint == last and beyond > 0
    head = await store.head_position()
    position = await live_rebuild(store, SampleEngine(store))
    assert position == checkpoint
    assert await store.head_position() == head  # replay appended nothing
    echoes = await store.pool.fetchval("SELECT count(*) FROM sample_engine.echoes")
    assert echoes == 12
    assert await store.pool.fetchval("SELECT sum(n) FROM sample_engine.counts") == 12
    # The live engine follows on from the same checkpoint in the new tables.
    more = await store.append("s-9", [NewEvent("t.v1.Counted", {"n": 1})], StreamState.ANY)
    await ProjectionRunner(store, SampleEngine(store), batch_size=5).catch_up(more.position)
    assert await store.pool.fetchval("SELECT count(*) FROM sample_engine.echoes") == 13


async def waiting_for_a_lock(store: PostgresEventStore) -> bool:
    return bool(await store.pool.fetchval("SELECT count(*) > 0 FROM pg_locks WHERE NOT granted"))


@pytest.mark.parametrize("first,second", [("counts", "effects"), ("effects", "counts")])
async def test_the_switch_never_deadlocks_with_a_reader_of_two_tables(
    store: PostgresEventStore, first: str, second: str
) -> None:
    """A reader holds one table and then reads the other while the switch wants both: the
    switch gives way and tries again; neither the reader nor the rebuild fails. (Dropping the
    tables one by one deadlocked with the reader in one of the two orders.)"""
    last = await fill(store, 2, 10)
    await ProjectionRunner(store, SampleProjection()).catch_up(last)
    reader = await store.pool.acquire()
    try:
        transaction = reader.transaction()
        await transaction.start()
        await reader.fetch(f"SELECT * FROM sample_rm.{first}")
        rebuilding = asyncio.create_task(live_rebuild(store, SampleProjection()))
        while not await waiting_for_a_lock(store):
            assert not rebuilding.done(), "the switch did not wait for the reader"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the switch holds what it could get
        await reader.fetch(f"SELECT * FROM sample_rm.{second}")
        await transaction.commit()
    finally:
        await store.pool.release(reader)
    await rebuilding
    assert await counts(store) == expected(2, 10)
