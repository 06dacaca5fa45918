"""Event store benchmarks: single appends, batched appends and read_all, against raw SQL on a
table shaped like eventstore.events (same columns and indexes, a sequence for position)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from bench.common import (
    REGISTERED,
    UPDATED,
    Metric,
    interleaved,
    log,
    median,
    metadata,
    registered,
    scaled,
    updated,
)
from shared.eventstore import ExpectedVersion, NewEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore

RAW_TABLE_DDL = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE bench.raw_events (LIKE eventstore.events INCLUDING ALL);
CREATE SEQUENCE bench.raw_position;
ALTER TABLE bench.raw_events ALTER position SET DEFAULT nextval('bench.raw_position');
"""
_RAW_INSERT = """INSERT INTO bench.raw_events
    (event_id, stream_id, category, version, type, data, metadata, recorded_at, hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8)"""
_COPY_COLUMNS = [
    "event_id",
    "stream_id",
    "category",
    "version",
    "type",
    "data",
    "metadata",
    "recorded_at",
    "hash",
]
_RAW_READ = """SELECT position, event_id, stream_id, version, type, data::text, metadata::text,
    recorded_at FROM eventstore.events WHERE position > $1 ORDER BY position LIMIT $2"""

WRITERS = 8
STREAMS_PER_WRITER = 16
BATCH = 100
BATCH_WRITERS = 2
READ_PAGE = 5000
READ_MIN_EVENTS = 220_000
UPDATE_EVERY = 11  # every 11th import batch updates 100 contacts imported earlier (~9%)

# The same payloads for the store and the raw baseline, built once.
_PAYLOADS = [(registered(str(uuid.uuid4()), i), metadata()) for i in range(1000)]


async def create_raw_table(pool: asyncpg.Pool) -> None:
    await pool.execute(RAW_TABLE_DDL)


# --- 1. single-event appends, 8 writers --------------------------------------------------------

WriteOne = Callable[[str, int, dict[str, Any], dict[str, Any]], Awaitable[None]]


async def _single_run(write_one: WriteOne, seconds: float) -> float:
    """WRITERS tasks, each appending one event at a time to its own streams, round robin."""
    deadline = time.perf_counter() + seconds

    async def writer(w: int) -> int:
        prefix = f"bench-{uuid.uuid4().hex[:12]}w{w}s"
        versions = [-1] * STREAMS_PER_WRITER
        n = 0
        while time.perf_counter() < deadline:
            s = n % STREAMS_PER_WRITER
            data, meta = _PAYLOADS[(n * WRITERS + w) % len(_PAYLOADS)]
            await write_one(f"{prefix}{s}", versions[s], data, meta)
            versions[s] += 1
            n += 1
        return n

    started = time.perf_counter()
    counts = await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    return sum(counts) / (time.perf_counter() - started)


async def append_single(store: PostgresEventStore, raw_pool: asyncpg.Pool) -> Metric:
    async def store_one(stream: str, last: int, data: dict[str, Any], meta: dict[str, Any]) -> None:
        expected: ExpectedVersion = last if last >= 0 else StreamState.NO_STREAM
        await store.append(stream, [NewEvent(REGISTERED, data, meta)], expected)

    async def raw_one(stream: str, last: int, data: dict[str, Any], meta: dict[str, Any]) -> None:
        body = orjson.dumps(data)
        async with raw_pool.acquire() as conn:
            await conn.execute(
                _RAW_INSERT,
                uuid.uuid4(),
                stream,
                "bench",
                last + 1,
                REGISTERED,
                body.decode(),
                orjson.dumps(meta).decode(),
                hashlib.sha256(body).digest(),
            )

    seconds = scaled(4.0, 1.0)
    raws, stores = await interleaved(
        lambda _r: _single_run(raw_one, seconds),
        lambda _r: _single_run(store_one, seconds),
        rounds=3,
        label="append_single_8w",
    )
    return Metric(
        name="append_single_8w",
        value=median(stores),
        unit="events/s",
        baseline=median(raws),
        baseline_desc="raw INSERT, 1 row/txn, same 8 writers and pool",
        samples=stores,
        baseline_samples=raws,
        extra={"writers": WRITERS, "seconds_per_round": seconds},
    )


# --- 2. batched appends: an import of 100 contacts per transaction ------------------------------


class ContactImport:
    """One writer's import: batches of 100 new contacts, every UPDATE_EVERY-th batch updating
    100 contacts this writer imported (and committed) earlier."""

    def __init__(self) -> None:
        self.n = 0
        self.batches = 0
        self.contacts: list[str] = []
        self.next_update = 0

    def batch(self) -> list[tuple[str, str, dict[str, Any], ExpectedVersion]]:
        self.batches += 1
        out: list[tuple[str, str, dict[str, Any], ExpectedVersion]] = []
        if self.batches % UPDATE_EVERY == 0 and len(self.contacts) >= self.next_update + BATCH:
            for cid in self.contacts[self.next_update : self.next_update + BATCH]:
                self.n += 1
                out.append((f"contact-{cid}", UPDATED, updated(cid, self.n), 0))
            self.next_update += BATCH
            return out
        for _ in range(BATCH):
            self.n += 1
            cid = str(uuid.uuid4())
            self.contacts.append(cid)
            out.append(
                (f"contact-{cid}", REGISTERED, registered(cid, self.n), StreamState.NO_STREAM)
            )
        return out


async def _store_import(
    store: PostgresEventStore, imports: list[ContactImport], events: int
) -> float:
    async def writer(imp: ContactImport, todo: int) -> int:
        done = 0
        while done < todo:
            batch = imp.batch()
            appends = [
                StreamAppend(stream, [NewEvent(type_, data, _PAYLOADS[i][1])], expected)
                for i, (stream, type_, data, expected) in enumerate(batch)
            ]
            async with store.pool.acquire() as conn:
                async with conn.transaction():
                    results = await store.append_batch_on(conn, appends)
                store.committed(max(r.position for r in results))
            done += len(batch)
        return done

    started = time.perf_counter()
    per_writer = events // len(imports)
    counts = await asyncio.gather(*(writer(imp, per_writer) for imp in imports))
    return sum(counts) / (time.perf_counter() - started)


async def _copy_run(pool: asyncpg.Pool, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    data, meta = (orjson.dumps(x).decode() for x in _PAYLOADS[0])
    digest = hashlib.sha256(data.encode()).digest()

    async def writer() -> int:
        n = 0
        while time.perf_counter() < deadline:
            at = datetime.now(UTC)
            records = [
                (
                    uuid.uuid4(),
                    f"bench-{uuid.uuid4().hex}",
                    "bench",
                    0,
                    REGISTERED,
                    data,
                    meta,
                    at,
                    digest,
                )
                for _ in range(BATCH)
            ]
            async with pool.acquire() as conn:
                await conn.copy_records_to_table(
                    "raw_events", schema_name="bench", records=records, columns=_COPY_COLUMNS
                )
            n += BATCH
        return n

    started = time.perf_counter()
    counts = await asyncio.gather(*(writer() for _ in range(BATCH_WRITERS)))
    return sum(counts) / (time.perf_counter() - started)


async def append_batch(store: PostgresEventStore, raw_pool: asyncpg.Pool) -> Metric:
    """Also seeds the contacts (>= 100k events, ~9% updates) that the rebuild benchmark replays."""
    imports = [ContactImport() for _ in range(BATCH_WRITERS)]
    per_round = int(scaled(37_000, 2 * BATCH))
    raws, stores = await interleaved(
        lambda _r: _copy_run(raw_pool, scaled(2.0, 0.5)),
        lambda _r: _store_import(store, imports, per_round),
        rounds=3,
        label="append_batch100",
    )
    return Metric(
        name="append_batch100",
        value=median(stores),
        unit="events/s",
        baseline=median(raws),
        baseline_desc="COPY (copy_records_to_table) of 100-row batches, 2 writers",
        samples=stores,
        baseline_samples=raws,
        extra={
            "shape": "100 contact streams x 1 event per txn via append_batch_on, 2 writers",
            "contact_events": sum(imp.n for imp in imports),
        },
    )


async def append_batch_one_stream(store: PostgresEventStore, copy_rate: float) -> Metric:
    """For comparison: 100 events to ONE stream per append (one round trip per transaction)."""
    deadline = time.perf_counter() + scaled(3.0, 0.5)
    events = [NewEvent(REGISTERED, d, m) for d, m in _PAYLOADS[:BATCH]]

    async def writer() -> int:
        n = 0
        while time.perf_counter() < deadline:
            fresh = [NewEvent(e.type, e.data, e.metadata) for e in events]
            await store.append(f"bulk-{uuid.uuid4().hex}", fresh, StreamState.NO_STREAM)
            n += BATCH
        return n

    started = time.perf_counter()
    counts = await asyncio.gather(*(writer() for _ in range(BATCH_WRITERS)))
    rate = sum(counts) / (time.perf_counter() - started)
    return Metric(
        name="append_batch100_one_stream",
        value=rate,
        unit="events/s",
        baseline=copy_rate,
        baseline_desc="COPY of 100-row batches (median from append_batch100)",
        samples=[rate],
    )


# --- 3. read_all ---------------------------------------------------------------------------------


async def top_up(store: PostgresEventStore, minimum: int) -> int:
    """Make sure the log holds at least ``minimum`` events (1000-event appends, 'bulk' streams)."""
    have = int(await store.pool.fetchval("SELECT count(*) FROM eventstore.events"))
    chunk = [NewEvent(REGISTERED, d, m) for d, m in _PAYLOADS]
    while have < minimum:
        fresh = [NewEvent(e.type, e.data, e.metadata) for e in chunk]
        await store.append(f"bulk-{uuid.uuid4().hex}", fresh, StreamState.NO_STREAM)
        have += len(fresh)
    return have


async def _read_store(store: PostgresEventStore) -> tuple[int, float]:
    started = time.perf_counter()
    after, n = 0, 0
    while True:
        page = await store.read_all(after, limit=READ_PAGE)
        if not page.events:
            break
        n += len(page.events)
        after = page.last_position
    return n, n / (time.perf_counter() - started)


async def _read_raw(pool: asyncpg.Pool) -> tuple[int, float]:
    started = time.perf_counter()
    after, n = 0, 0
    loads = orjson.loads
    async with pool.acquire() as conn:
        while True:
            rows = await conn.fetch(_RAW_READ, after, READ_PAGE)
            if not rows:
                break
            decoded = [(r[0], r[1], r[2], r[3], r[4], loads(r[5]), loads(r[6]), r[7]) for r in rows]
            n += len(decoded)
            after = rows[-1][0]
    return n, n / (time.perf_counter() - started)


async def read_all(store: PostgresEventStore, raw_pool: asyncpg.Pool) -> Metric:
    total = await top_up(store, int(scaled(READ_MIN_EVENTS, 10_000)))
    log(f"  read_all over {total:,} events, pages of {READ_PAGE}")
    counts: list[int] = []

    async def raw(_r: int) -> float:
        n, rate = await _read_raw(raw_pool)
        counts.append(n)
        return rate

    async def via_store(_r: int) -> float:
        n, rate = await _read_store(store)
        counts.append(n)
        return rate

    raws, stores = await interleaved(raw, via_store, rounds=3, label="read_all", budget=20)
    return Metric(
        name="read_all",
        value=median(stores),
        unit="events/s",
        baseline=median(raws),
        baseline_desc="raw SELECT paging position > $1 LIMIT n, orjson decode",
        samples=stores,
        baseline_samples=raws,
        extra={"events": total, "page": READ_PAGE, "counts_per_pass": sorted(set(counts))},
    )
