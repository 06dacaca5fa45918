"""The checkpoint writer on a real PostgreSQL: one leader among replicas, a checkpoint each
interval only when the log moved, a standby taking over, a loud stop when the log lost what it
signed, and the project role starting it only where CHECKPOINT_SIGNING_KEY is set."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from shared.eventstore import StreamAppend, StreamState
from shared.eventstore.audit.checkpoints import SigningKey
from shared.eventstore.audit.port import LogBehindCheckpoint
from shared.eventstore.audit.postgres import PostgresAuditLog
from shared.eventstore.audit.verify import verify_log
from shared.eventstore.audit.worker import CheckpointWriter
from shared.eventstore.postgres import PostgresEventStore
from shared.runtime import Runtime, checkpoint_writer, run_projections
from shared.settings import Settings
from tests.eventstore.audit_support import ev, tamper

EVERY = 0.2


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn)
    yield s
    await s.close()


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_one_leader_writes_when_the_log_moved_and_a_standby_takes_over(
    store: PostgresEventStore, dsn: str
) -> None:
    audit, key = PostgresAuditLog(store.pool), SigningKey.generate()
    writers = [CheckpointWriter(audit, key, dsn, every=EVERY, standby_poll=0.05) for _ in "ab"]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(w.run(s)) for w, s in zip(writers, stops, strict=True)]

    async def numbers() -> list[int]:
        return [c.number for c in await audit.checkpoints()]

    try:
        await store.append("c-1", [ev(n=1)], StreamState.NO_STREAM)
        await until(lambda: _has(audit, 1))
        assert sum(w.active for w in writers) == 1
        await asyncio.sleep(EVERY * 4)  # nothing moved: nothing more
        assert await numbers() == [1]
        await store.append("c-2", [ev(n=2)], StreamState.NO_STREAM)
        await until(lambda: _has(audit, 2))
        leader = next(i for i, w in enumerate(writers) if w.active)
        stops[leader].set()
        await tasks[leader]
        await store.append("c-3", [ev(n=3)], StreamState.NO_STREAM)
        await until(lambda: _has(audit, 3))
        assert writers[1 - leader].active and await numbers() == [1, 2, 3]
        chain = await audit.checkpoints()
        assert all(b.previous == a.digest() for a, b in itertools.pairwise(chain))
    finally:
        for s in stops:
            s.set()
        await asyncio.gather(*tasks)


async def _has(audit: PostgresAuditLog, number: int) -> bool:
    latest = await audit.latest_checkpoint()
    return latest is not None and latest.number >= number


async def test_checkpoints_taken_among_concurrent_writers_hold(store: PostgresEventStore) -> None:
    """A checkpoint covers only positions nothing can commit below any more: transactions that
    commit late, below positions already visible, never change what it committed to."""
    audit, key = PostgresAuditLog(store.pool), SigningKey.generate()
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            await store.append(f"w{w}-{i % 5}", [ev(i=i)], StreamState.ANY)
            i += 1

    async def late() -> None:
        while not stop.is_set():
            async with store.transaction() as uow:
                await uow.append_multi([StreamAppend("late-1", [ev(n=1)], StreamState.ANY)])
                await asyncio.sleep(0.1)  # commits after later appends became visible

    tasks = [asyncio.create_task(writer(w)) for w in range(5)] + [asyncio.create_task(late())]
    made = []
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if (cp := await audit.create_checkpoint(key)) is not None:
                made.append(cp)
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert len(made) >= 5
    report = await verify_log(audit, made, pinned=[key.public_key])
    assert report.ok and report.checkpoints == len(made), report.to_json()


async def test_the_writer_stops_on_a_log_that_lost_its_tail(store: PostgresEventStore) -> None:
    audit, key = PostgresAuditLog(store.pool), SigningKey.generate()
    writer = CheckpointWriter(audit, key, store.dsn, every=3600)
    await store.append("c-1", [ev(n=1), ev(n=2)], StreamState.NO_STREAM)
    assert await writer.tick() is not None and await writer.tick() is None
    await tamper(store, "DELETE FROM eventstore.events WHERE version = 1")
    with pytest.raises(LogBehindCheckpoint, match="tail was removed"):
        await writer.tick()
    with pytest.raises(LogBehindCheckpoint):  # and at once whenever it starts leading again
        await asyncio.wait_for(writer.run(asyncio.Event()), 10)
    assert not writer.active


async def test_a_project_role_runs_the_writer_only_with_a_key(
    store: PostgresEventStore, dsn: str
) -> None:
    rt = Runtime(dsn, store.pool, store)
    stop = asyncio.Event()
    assert checkpoint_writer(rt, Settings(), stop) == {}
    with pytest.raises(SystemExit, match="CHECKPOINT_SIGNING_KEY is set, but"):
        checkpoint_writer(rt, Settings(checkpoint_signing_key="not a key"), stop)
    from shared.eventstore.esdb import EventStoreDBStore

    esdb = Runtime(dsn, store.pool, EventStoreDBStore(client=None))
    key = SigningKey.generate().private_text()
    with pytest.raises(SystemExit, match="keeps no checkpoints"):
        checkpoint_writer(esdb, Settings(checkpoint_signing_key=key), stop)

    settings = Settings(checkpoint_signing_key=key, checkpoint_interval_seconds=EVERY)
    role = asyncio.create_task(run_projections(rt, [], settings, stop))
    try:
        await store.append("c-1", [ev(n=1)], StreamState.NO_STREAM)
        await until(lambda: _has(PostgresAuditLog(store.pool), 1))
    finally:
        stop.set()
        await role
