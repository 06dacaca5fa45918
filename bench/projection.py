"""Projection benchmarks: a full rebuild of the contacts read model, and the live lag of the
`project` process behind appends at a steady rate."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from bench.common import (
    REGISTERED,
    Metric,
    interleaved,
    log,
    median,
    metadata,
    percentile,
    registered,
    scaled,
)
from bench.procs import free_port, running, service_env, tail, wait_serving
from services.contacts.adapters.readmodel import ContactsProjection
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.checkpoints import wait_for_checkpoint
from shared.projections.runner import ProjectionRunner
from shared.projections.schema import quote_ident

REBUILD_BATCH = 2000

# --- 4. rebuild -----------------------------------------------------------------------------------

_UPSERT = """
INSERT INTO {table} (contact_id, email, phone, external_id, first_name, last_name, tags,
                     version, create_time, update_time)
SELECT r.id, r.email, r.phone, r.xid, r.fn, r.ln, r.tags::text[], r.v, r.created, r.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::bigint[], $9::timestamptz[], $10::timestamptz[])
     AS r(id, email, phone, xid, fn, ln, tags, v, created, at)
ON CONFLICT (contact_id) DO UPDATE SET
    email = excluded.email, phone = excluded.phone, external_id = excluded.external_id,
    first_name = excluded.first_name, last_name = excluded.last_name, tags = excluded.tags,
    version = excluded.version, update_time = excluded.update_time
"""
_FIELDS = ("email", "phone", "external_id", "first_name", "last_name")
Row = list[Any]  # email, phone, external_id, first_name, last_name, tags literal, v, created, at


def _fold(row: Row | None, type_: str, d: dict[str, Any], v: int, at: datetime) -> Row:
    if type_ == REGISTERED or row is None:
        tags = d.get("tags", [])
        return [*(d.get(f, "") for f in _FIELDS), "{" + ",".join(tags) + "}", v, at, at]
    row = list(row)
    for f in d.get("changed_fields", []):
        if f == "tags":
            row[5] = "{" + ",".join(d.get("tags", [])) + "}"
        else:
            row[_FIELDS.index(f)] = d.get(f, "")
    row[6], row[8] = v, at
    return row


async def _raw_upsert(
    pool: asyncpg.Pool, events: list[tuple[str, dict[str, Any], int, datetime]], schema: str
) -> float:
    """Upsert the rows these events produce, folded per batch of REBUILD_BATCH events."""
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        await conn.execute(f"SET search_path TO {quote_ident(schema)}")
        await conn.execute(ContactsProjection.ddl)
        await conn.execute("RESET search_path")
        sql = _UPSERT.format(table=f"{quote_ident(schema)}.contacts")
        started = time.perf_counter()
        state: dict[str, Row] = {}
        for i in range(0, len(events), REBUILD_BATCH):
            touched: dict[str, Row] = {}
            for type_, d, v, at in events[i : i + REBUILD_BATCH]:
                cid = d["contact_id"]
                touched[cid] = state[cid] = _fold(state.get(cid), type_, d, v, at)
            cols: list[list[Any]] = [list(touched)]
            cols += [list(c) for c in zip(*touched.values(), strict=True)]
            async with conn.transaction():
                await conn.execute(sql, *cols)
        return len(events) / (time.perf_counter() - started)


async def rebuild(store: PostgresEventStore, raw_pool: asyncpg.Pool) -> Metric:
    rows = await raw_pool.fetch(
        """SELECT type, data::text, version, recorded_at FROM eventstore.events
           WHERE category = 'contact' ORDER BY position"""
    )
    events = [(r[0], orjson.loads(r[1]), r[2], r[3]) for r in rows]
    updates = sum(1 for e in events if e[0] != REGISTERED)
    log(f"  rebuilding from {len(events):,} contact events ({updates:,} updates)")
    tag = uuid.uuid4().hex[:6]

    async def via_runner(r: int) -> float:
        runner = ProjectionRunner(
            store,
            ContactsProjection(),
            name=f"bench_rebuild_{tag}_{r}",
            schema=f"bench_rm_{tag}_{r}",
            batch_size=REBUILD_BATCH,
        )
        started = time.perf_counter()
        await runner.catch_up()
        return len(events) / (time.perf_counter() - started)

    raws, stores = await interleaved(
        lambda r: _raw_upsert(raw_pool, events, f"bench_up_{tag}_{r}"),
        via_runner,
        rounds=2,
        label="projection_rebuild_contacts",
        budget=25,
    )
    return Metric(
        name="projection_rebuild_contacts",
        value=median(stores),
        unit="events/s",
        baseline=median(raws),
        baseline_desc=f"raw INSERT .. ON CONFLICT DO UPDATE from unnest, {REBUILD_BATCH}/txn",
        samples=stores,
        baseline_samples=raws,
        extra={"events": len(events), "updates": updates, "batch_size": REBUILD_BATCH},
    )


# --- 6. live lag ---------------------------------------------------------------------------------


async def _notify_rtt(dsn: str, count: int) -> list[float]:
    """LISTEN on one connection, NOTIFY from another, one at a time: round trips in ms."""
    listener, sender = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[str] = loop.create_future()

    def on_notify(_c: Any, _pid: int, _channel: str, payload: str) -> None:
        if not got.done():
            got.set_result(payload)

    try:
        await listener.add_listener("bench_rtt", on_notify)
        out = []
        for i in range(count):
            got = loop.create_future()
            t0 = time.perf_counter()
            await sender.execute("SELECT pg_notify('bench_rtt', $1)", str(i))
            await asyncio.wait_for(got, 5)
            out.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.001)
        return out
    finally:
        await listener.close()
        await sender.close()


async def _steady_appends(
    store: PostgresEventStore, rate: float, seconds: float
) -> tuple[list[float], int, float]:
    """Append one ContactRegistered at a time at ``rate``/s; a watcher polls the read model every
    5 ms for the contacts appended and not yet seen. Returns lags (ms), unseen count, real rate."""
    committed: dict[str, float] = {}
    pending: set[str] = set()
    lags: list[float] = []
    done = asyncio.Event()

    async def append_one(n: int) -> None:
        cid = str(uuid.uuid4())
        event = NewEvent(REGISTERED, registered(cid, n), metadata())
        await store.append(f"contact-{cid}", [event], StreamState.NO_STREAM)
        committed[cid] = time.perf_counter()
        pending.add(cid)

    async def watch() -> None:
        async with store.pool.acquire() as conn:
            give_up = None
            while not (done.is_set() and not pending):
                if done.is_set():
                    give_up = give_up or time.perf_counter() + 10
                    if time.perf_counter() > give_up:
                        return
                if pending:
                    rows = await conn.fetch(
                        "SELECT contact_id::text FROM contacts_rm.contacts"
                        " WHERE contact_id = ANY($1::uuid[])",
                        list(pending),
                    )
                    now = time.perf_counter()
                    for (cid,) in rows:
                        lags.append((now - committed[cid]) * 1000)
                        pending.discard(cid)
                await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    n = 0
    while n < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while n < due:
            task = asyncio.create_task(append_one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    real_rate = total / (time.perf_counter() - started)
    done.set()
    await watcher
    return lags, len(pending), real_rate


async def projection_lag(store: PostgresEventStore, dsn: str, notes: list[str]) -> Metric:
    rtts = await _notify_rtt(dsn, int(scaled(500, 50)))
    log(f"  NOTIFY round trip p99 {percentile(rtts, 99):.2f} ms")
    # Start the projector at the head: this measures following the log, not replaying the
    # contacts seeded earlier (the rebuild benchmark covers that).
    head = await store.head_position()
    in_log = int(await store.pool.fetchval("SELECT count(*) FROM eventstore.events"))
    await store.pool.execute(
        "INSERT INTO projections.checkpoints (name, position) VALUES ('contacts', $1)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        head,
    )
    port = free_port()
    args = ["-m", "services.contacts", "project"]
    async with running("contacts-project", args, service_env(dsn, port)) as (proc, path):
        await wait_serving(port, proc, path)
        started = time.perf_counter()
        await wait_for_checkpoint(store.pool, "contacts", head, timeout=60)
        caught_up = time.perf_counter() - started
        log(f"  project process at the head of {in_log:,} events; appending 1000 events/s")
        lags, unseen, rate = await _steady_appends(store, 1000, scaled(10.0, 2.0))
        if proc.returncode is not None:
            notes.append(f"contacts project exited with {proc.returncode}: {tail(path)}")
        elif text := tail(path, 10):
            notes.append(f"contacts project logged: {text}")
    if unseen:
        notes.append(f"projection_lag: {unseen} appended contacts never appeared in 10 s")
    p99 = percentile(lags, 99)
    log(f"  lag p50 {percentile(lags, 50):.1f} ms, p99 {p99:.1f} ms at {rate:,.0f} events/s")
    return Metric(
        name="projection_lag_p99_ms",
        value=p99,
        unit="ms",
        baseline=percentile(rtts, 99),
        baseline_desc="NOTIFY round trip p99 (LISTEN on one connection, NOTIFY from another)",
        extra={
            "lag_p50_ms": round(percentile(lags, 50), 2),
            "lag_p95_ms": round(percentile(lags, 95), 2),
            "lag_max_ms": round(max(lags, default=float("nan")), 2),
            "append_rate": round(rate, 1),
            "seen": len(lags),
            "unseen": unseen,
            "startup_s": round(caught_up, 2),
            "events_in_log": in_log,
            "note": "append returns -> watcher (5 ms polling) sees the row; includes poll delay",
        },
    )
