"""Segmentation benchmarks (services/segmentation/README.md):

- segment_event_latency_p99_ms: from the commit of an OrderPlaced to the commit of the
  membership events it causes (the engine's transaction, which also moves its checkpoint past
  the order), through the real `python -m services.segmentation project` process (membership
  engine, segments read model and timers; a contacts serve process as CONTACTS_TARGET), at a
  steady 500 source events/s with 50 active segments; next to the same pipeline with a trivial
  projection (bench/trivial_projector.py) in the engine's place. An engine slower than that
  rate is waited for DRAIN_SECONDS after the load, and the p99 is then a lower bound.
- segment_backfill: a new segment over contacts already in the facts tables, from the
  CreateSegment command returning to the commit of the engine's batch holding its last
  membership event; next to a raw INSERT ... SELECT of the same membership rows.
- segmentation_projection: the engine (a ProjectionRunner over MembershipEngine in this
  process) catching up a backlog of mixed contact and order events with 50 segments, next to
  the same engine with no segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import heapq
import math
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import REGISTERED, Metric, interleaved, log, median, metadata, percentile, scaled
from bench.orders import CATALOGUE, CURRENCY, _lifecycle, _schedule
from bench.procs import CpuMeter, free_port, running, service_env, tail, wait_serving
from bench.trivial_projector import NAME as TRIVIAL
from bench.trivial_projector import SCHEMA as TRIVIAL_SCHEMA
from services.contacts.cli import import_csv
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from services.segmentation.adapters.contacts_client import GrpcContactVersions
from services.segmentation.adapters.engine import MembershipEngine
from services.segmentation.adapters.facts_writer import CATEGORIES
from services.segmentation.adapters.queries import SegmentQueries
from services.segmentation.adapters.readmodel import SegmentsProjection
from services.segmentation.application import membership as m
from services.segmentation.application.segments import SegmentCommands
from services.segmentation.domain import rules
from shared.domain.timestamps import timestamp_text
from shared.eventstore import NewEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.checkpoints import wait_for_checkpoint
from shared.projections.runner import ProjectionRunner
from shared.projections.schema import ensure_schema, quote_ident
from shared.testing import tokens

ENGINE = MembershipEngine.name  # "segmentation-engine": its checkpoint
SEGMENTS = SegmentsProjection.name  # segmentation_rm (spans), in the same project process
FACTS = MembershipEngine.schema  # "segmentation_facts"
UPDATED = "crm.contacts.v1.ContactUpdated"
RATE = 500  # source events/s (docs/architecture.md §6)
LATENCY_SECONDS = 10.0
WARMUP_SECONDS = 1.0
POLL = 0.002  # the watcher's polling interval (s): half of it is added to every latency
# How long the projection may take to catch up after the load: an engine slower than RATE falls
# further behind every second, and waiting it out would make `make bench` last minutes more.
DRAIN_SECONDS = 30.0
MAX_ORDERS_PER_CONTACT = 19  # fewer than the orders_count segments: every order flips one
# The goal speaks of 200k contacts; `make bench` runs 50k (BENCH_SCALE=4: 200k), because at 200k
# the engine's one append of all ~60k membership events took about a minute on this machine:
# asyncpg's command_timeout (60 s, shared/db/pool.py), so the batch may fail and be redone.
BACKFILL_CONTACTS = 50_000
# 10k events, not 50k: with 50 segments the engine catches up some hundreds a second, 50k would
# take minutes (BENCH_SCALE=5: 50k).
BACKLOG_EVENTS = 10_000
BATCH = 500  # shared/settings.py projection_batch_size, as the project role runs the engine

# --- the 50 segments -----------------------------------------------------------------------------


def segment_rules(prefix: str) -> list[tuple[str, str]]:
    """(key, rule) of 50 segments a shop could have: order counts and revenue tiers, purchases
    and orders within windows (timers), carts, profile fields and attributes, segments on
    segments. With ``orders_count >= n`` for n = 1..20, each of a contact's first 20 orders
    enters it into one more segment (at least)."""
    out = [(f"{prefix}oc-{n:02d}", f"orders_count >= {n}") for n in range(1, 21)]
    out += [(f"{prefix}rev-{n}", f"revenue.EUR >= {5000 * n}") for n in range(1, 9)]
    out += [
        (f"{prefix}sku-{k}", f"purchased(sku = '{CATALOGUE[k][0]}', within 30d)") for k in range(10)
    ]
    out += [
        (f"{prefix}big-90d", "placed_order(total >= 10000, within 90d)"),
        (f"{prefix}busy-7d", "placed_order(count >= 3, within 7d)"),
        (f"{prefix}cart-7d", "abandoned_cart(within 7d)"),
        (f"{prefix}no-cart", "NOT abandoned_cart(within 30d) AND orders_count >= 1"),
        (f"{prefix}vip", "tags CONTAINS 'vip'"),
        (f"{prefix}news-buyer", "tags CONTAINS 'newsletter' AND orders_count >= 1"),
        (f"{prefix}score-50", "attributes.score >= 50"),
        (f"{prefix}shop-domain", "email_domain = 'shop.example'"),
        (f"{prefix}recent", "archived = false AND last_order_at > -30d"),
        (f"{prefix}oc5-rich", f"in_segment('{prefix}oc-05') AND revenue.EUR >= 20000"),
        (f"{prefix}vip-buyer", f"in_segment('{prefix}vip') AND orders_count >= 2"),
        (f"{prefix}aov-40", "aov.EUR >= 4000"),
    ]
    assert len(out) == 50
    return out


# --- processes ------------------------------------------------------------------------------------


async def _set_checkpoint(pool: asyncpg.Pool, name: str, position: int) -> None:
    await pool.execute(
        "INSERT INTO projections.checkpoints (name, position) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        name,
        position,
    )


@contextlib.asynccontextmanager
async def _contacts_serve(dsn: str) -> AsyncIterator[str]:
    """A contacts serve process: CONTACTS_TARGET for the engine, and the import of contacts."""
    port = free_port()
    args = ["-m", "services.contacts", "serve"]
    async with running("segmentation-contacts-serve", args, service_env(dsn, port)) as (
        proc,
        path,
    ):
        await wait_serving(port, proc, path)
        yield f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def _project(
    store: PostgresEventStore, dsn: str, target: str, name: str, notes: list[str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The real project role, its engine starting at the head of the log (the events earlier
    benchmarks appended are not this benchmark's)."""
    await _set_checkpoint(store.pool, ENGINE, await store.head_position())
    port = free_port()
    env = {**service_env(dsn, port), "CONTACTS_TARGET": target}
    async with running(name, ["-m", "services.segmentation", "project"], env) as (proc, path):
        await wait_serving(port, proc, path)
        yield proc
        if proc.returncode is not None:
            notes.append(f"{name} exited with {proc.returncode}: {tail(path)}")
        elif text := tail(path, 10):
            notes.append(f"{name} logged: {text}")


async def _settle(store: PostgresEventStore, timeout: float = 300) -> None:
    """Wait until the project process's engine and segments projection have applied
    everything appended so far (so one measurement does not pay for the previous one)."""
    head = await store.head_position()
    for name in (ENGINE, SEGMENTS):
        await wait_for_checkpoint(store.pool, name, head, timeout)


async def _import_contacts(store: PostgresEventStore, target: str, n: int, tag: str) -> list[str]:
    """``n`` contacts through contacts' ImportContacts (ContactRegistered with the personal
    fields sealed, as in production); their ids in log order."""
    after = await store.head_position()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["email", "first_name", "tags", "attributes.score:number"])
            for i in range(n):
                domain = "shop.example" if i % 3 else "mail.example"
                tags = ["vip"] if i % 5 == 0 else ["newsletter"] if i % 2 else []
                w.writerow([f"seg-{tag}-{i}@{domain}", f"Buyer{i}", ";".join(tags), i % 100])
        response, local = await import_csv(path, target, token=tokens.SERVICE_TOKEN, batch=1000)
    if response.created != n or response.failed or local.errors:
        raise RuntimeError(f"import: {response.created} created, {response.failed} failed")
    rows = await store.pool.fetch(
        """SELECT data->>'contact_id' FROM eventstore.events
           WHERE category = 'contact' AND type = $1 AND position > $2 ORDER BY position""",
        REGISTERED,
        after,
    )
    return [r[0] for r in rows]


# --- 1. segment_event_latency_p99_ms -----------------------------------------------------------


def _order(contact_id: str, n: int) -> tuple[str, NewEvent]:
    """An OrderPlaced as the orders service publishes it (its domain's decision), placed now,
    of 1-3 SKUs among the first 20 of the catalogue (the purchased(...) segments read them)."""
    order_id = str(uuid.uuid4())
    lines = random.Random(n).sample(CATALOGUE[:20], 1 + n % 3)
    items = [
        {"sku": s, "name": name, "quantity": 1 + n % 2, "unit_price": p, "discount": 0}
        for s, name, p in lines
    ]
    [(type_, data)] = orders.decide_place(
        order_id, contact_id, CURRENCY, items, placed_at=datetime.now(UTC), source="bench"
    )
    return orders.stream_of(order_id), NewEvent(type_, data, metadata())


@dataclass
class _Run:
    """One steady run: per source event id, its position and when its append returned (the
    commit), and when the projection's checkpoint was first seen at or past it (the commit of
    the batch holding its effect: the engine writes membership events, facts and checkpoint in
    one transaction). Times are perf_counter seconds."""

    sent: dict[str, tuple[int, float]] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    pending: list[tuple[int, str]] = field(default_factory=list)  # a heap by position
    last_position: int = 0
    rate: float = 0.0
    gave_up: float | None = None  # when waiting for the projection to catch up stopped

    def latencies(self) -> list[float]:
        """In ms; an event never seen counts as seen when the wait stopped (a lower bound)."""
        out = []
        for k, (_, t) in self.sent.items():
            seen = self.seen.get(k, self.gave_up)
            if seen is not None:
                out.append((seen - t) * 1000)
        return out


async def _feed(
    store: PostgresEventStore,
    make: Callable[[int], tuple[str, NewEvent]],
    first: int,
    rate: float,
    seconds: float,
    run: _Run,
) -> int:
    """Append make(first), make(first + 1), ... one per call at ``rate``/s for ``seconds``;
    return the next n."""
    tasks: set[asyncio.Task[None]] = set()

    async def append_one(n: int) -> None:
        stream, event = make(n)
        result = await store.append(stream, [event], StreamState.NO_STREAM)
        key = str(event.event_id)
        run.sent[key] = (result.position, time.perf_counter())
        heapq.heappush(run.pending, (result.position, key))
        run.last_position = max(run.last_position, result.position)

    total = int(rate * seconds)
    started = time.perf_counter()
    n = 0
    while n < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while n < due:
            task = asyncio.create_task(append_one(first + n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    run.rate = total / (time.perf_counter() - started)
    return first + total


async def _watch(store: PostgresEventStore, name: str, run: _Run, stop: asyncio.Event) -> None:
    """Read projection ``name``'s checkpoint every POLL seconds; each appended event at or
    below it is seen then."""
    async with store.pool.acquire() as conn:
        while True:
            last_round = stop.is_set()
            position = await conn.fetchval(
                "SELECT position FROM projections.checkpoints WHERE name = $1", name
            )
            now = time.perf_counter()
            while run.pending and run.pending[0][0] <= (position or 0):
                run.seen[heapq.heappop(run.pending)[1]] = now
            if last_round:
                return
            await asyncio.sleep(POLL)


async def _steady(
    store: PostgresEventStore,
    make: Callable[[int], tuple[str, NewEvent]],
    first: int,
    checkpoint: str,
    pids: dict[str, int],
) -> tuple[_Run, int, dict[str, float]]:
    """Warm up (not counted), then append at RATE for LATENCY_SECONDS while watching the
    projection's checkpoint, until it passes the last event appended (or DRAIN_SECONDS)."""
    warm = _Run()
    n = await _feed(store, make, first, RATE, WARMUP_SECONDS, warm)
    await wait_for_checkpoint(store.pool, checkpoint, warm.last_position, timeout=300)
    run, stop = _Run(), asyncio.Event()
    watcher = asyncio.create_task(_watch(store, checkpoint, run, stop))
    meter = CpuMeter(pids)
    meter.start()
    try:
        n = await _feed(store, make, n, RATE, scaled(LATENCY_SECONDS, 2.0), run)
        cpu = meter.stop()
        try:
            await wait_for_checkpoint(store.pool, checkpoint, run.last_position, DRAIN_SECONDS)
        except TimeoutError:
            run.gave_up = time.perf_counter()
    finally:
        stop.set()
        await watcher
    return run, n, cpu


# Per order of the run: how many membership events name it as their cause, how many of those
# entered an orders_count segment, and the latency from the database's clock. recorded_at is
# now() of the writing transaction, i.e. when it began: this leaves out how long the engine's
# transaction took. (Orders of one contact in one page are decided together, and the events
# name the last of them.)
_CAUSED = """
SELECT extract(epoch FROM min(m.recorded_at) - s.recorded_at) * 1000, count(*),
       count(*) FILTER (WHERE m.type = $2 AND m.data->>'segment_key' LIKE '%-oc-%')
FROM eventstore.events m JOIN eventstore.events s ON s.event_id = (m.data->>'cause_event_id')::uuid
WHERE m.category = 'segmentmembership' AND m.position > $1 AND s.event_id = ANY($3::uuid[])
GROUP BY s.event_id, s.recorded_at
"""
_TRIVIAL_RECORDED = f"""
SELECT extract(epoch FROM seen_at - source_recorded_at) * 1000
FROM {TRIVIAL_SCHEMA}.seen WHERE event_id = ANY($1::uuid[])
"""


def _summary(lat: list[float], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}p50_ms": round(percentile(lat, 50), 2),
        f"{prefix}p95_ms": round(percentile(lat, 95), 2),
        f"{prefix}p99_ms": round(percentile(lat, 99), 2),
        f"{prefix}max_ms": round(max(lat, default=math.nan), 2),
    }


async def _trivial_pipeline(
    store: PostgresEventStore, dsn: str, make: Callable[[int], tuple[str, NewEvent]]
) -> tuple[_Run, dict[str, Any]]:
    await _set_checkpoint(store.pool, TRIVIAL, await store.head_position())
    env, args = {"DATABASE_URL": dsn}, ["-m", "bench.trivial_projector"]
    async with running("segmentation-trivial-projector", args, env) as (proc, path):
        try:
            run, _, cpu = await _steady(store, make, 0, TRIVIAL, {"projector": proc.pid or 0})
        except TimeoutError:
            raise RuntimeError(f"trivial projector behind: {tail(path)}") from None
    recorded = [
        float(r[0])
        for r in await store.pool.fetch(_TRIVIAL_RECORDED, [uuid.UUID(k) for k in run.sent])
    ]
    return run, {**cpu, **_summary(recorded, "recorded_at_"), "unseen": len(run.pending)}


async def event_latency(store: PostgresEventStore, dsn: str, notes: list[str]) -> Metric:
    seconds = scaled(LATENCY_SECONDS, 2.0)
    # Round-robin over enough contacts that none gets more orders than there are orders_count
    # segments: each order enters its contact into one more of them.
    total = int(RATE * (2 * WARMUP_SECONDS + seconds))
    contacts_n = math.ceil(total / MAX_ORDERS_PER_CONTACT)
    tag = uuid.uuid4().hex[:6]
    async with _contacts_serve(dsn) as target:
        log(f"  baseline: trivial projector process, {RATE} OrderPlaced/s for {seconds:.0f}s")
        trivial_contacts = [str(uuid.uuid4()) for _ in range(contacts_n)]
        base, base_extra = await _trivial_pipeline(
            store, dsn, lambda n: _order(trivial_contacts[n % contacts_n], n)
        )
        base_lat = base.latencies()
        log(f"  trivial: p50 {percentile(base_lat, 50):.1f} ms, p99 {percentile(base_lat, 99):.1f}")
        async with _project(store, dsn, target, "segmentation-project", notes) as proc:
            commands = SegmentCommands(store, SegmentQueries(store.pool))
            for key, rule in segment_rules(f"lat-{tag}-"):
                await commands.create(key, key, "bench", rule, request_id=f"bench-{key}")
            ids = await _import_contacts(store, target, contacts_n, tag)
            await _settle(store)
            log(f"  project process: 50 segments, {len(ids)} contacts imported; {RATE}/s")
            run, _, cpu = await _steady(
                store,
                lambda n: _order(ids[n % len(ids)], n),
                0,
                ENGINE,
                {"project": proc.pid or 0},
            )
    lat = run.latencies()
    first = min(p for p, _ in run.sent.values())
    caused = await store.pool.fetch(_CAUSED, first, m.ENTERED, [uuid.UUID(k) for k in run.sent])
    events = sum(int(r[1]) for r in caused)
    oc_entries = sum(int(r[2]) for r in caused)
    applied = len(run.seen)
    if oc_entries != applied:
        notes.append(
            f"segment_event_latency: {applied} orders applied entered {oc_entries} orders_count"
            " segments (expected one each)"
        )
    p99 = percentile(lat, 99)
    # What the engine got through: orders applied / from the first append to the last seen.
    span = max(run.seen.values(), default=0.0) - min(t for _, t in run.sent.values())
    throughput = applied / span if span > 0 else math.nan
    if run.gave_up is not None:
        notes.append(
            f"segment_event_latency: the engine applied {applied:,} of {len(run.sent):,} orders"
            f" ({throughput:,.0f}/s < {RATE}/s) and was still behind {DRAIN_SECONDS:.0f}s after"
            " the load; the p99 counts the rest as applied then (a lower bound)"
        )
    log(
        f"  engine: p50 {percentile(lat, 50):.1f} ms, p99 {p99:.1f} ms at {run.rate:,.0f}/s;"
        f" applied {applied:,} orders at {throughput:,.0f}/s, {events:,} membership events"
    )
    return Metric(
        name="segment_event_latency_p99_ms",
        value=p99,
        unit="ms",
        baseline=percentile(base_lat, 99),
        baseline_desc=(
            "same load and measure, a trivial projection (ProjectionRunner recording each event"
            " in a table, own process) in place of the membership engine"
        ),
        extra={
            **_summary(lat, "lat_"),
            **_summary([float(r[0]) for r in caused], "named_cause_recorded_at_"),
            "baseline": {**_summary(base_lat, "lat_"), **base_extra, "rate": round(base.rate)},
            **cpu,
            "rate": round(run.rate, 1),
            "orders": len(run.sent),
            "orders_applied": applied,
            "engine_orders_per_s": round(throughput, 1),
            "lower_bound": run.gave_up is not None,
            "orders_named_as_cause": len(caused),
            "membership_events": events,
            "orders_count_entries": oc_entries,
            "segments": 50,
            "contacts": contacts_n,
            "seconds": round(seconds, 1),
            "note": (
                "lat_: append returned (commit) -> the engine's checkpoint, committed with the"
                f" membership events, seen past the order ({POLL * 1000:.0f} ms poll)."
                " named_cause_recorded_at_: membership recorded_at - order recorded_at, for"
                " the orders the events name (both are transaction starts: leaves out the"
                " engine's transaction time)"
            ),
        },
    )


# --- 2. segment_backfill --------------------------------------------------------------------------

# Two new segments over the same contacts: the headline one, and one with a window (a rule that
# depends on the clock: the engine also keeps each contact's next flip as a timer).
# (key suffix, rule, the rule as a WHERE clause over the facts tables as domain/rules/
# evaluate.py defines it: erased and merged contacts are in no segment, only orders not
# cancelled count.)
BACKFILLS = [
    (
        "plain",
        "tags CONTAINS 'vip' AND orders_count >= 2",
        """(SELECT count(*) FROM {facts}.orders o
            WHERE o.contact_id = c.contact_id AND NOT o.cancelled) >= 2""",
    ),
    (
        "window",
        "tags CONTAINS 'vip' AND placed_order(count >= 2, within 365d)",
        """(SELECT count(*) FROM {facts}.orders o
            WHERE o.contact_id = c.contact_id AND NOT o.cancelled
              AND o.place_time > now() - interval '365 days' AND o.place_time <= now()) >= 2""",
    ),
]
_BACKFILL_SQL = """
INSERT INTO {table} (segment_key, contact_id)
SELECT $1, c.contact_id FROM {facts}.contacts c
WHERE NOT c.erased AND c.merged_into IS NULL AND 'vip' = ANY(c.tags) AND {orders}
"""
# Contact g: tags by g % 4 (half vip), g % 5 orders (0-4), of which those with (g + k) % 10 = 0
# cancelled, one purchased SKU each; a bucket as domain/facts.py computes it.
_SEED_CONTACTS = f"""
INSERT INTO {FACTS}.contacts (contact_id, created_at, tags, locale, email_domain, attributes,
                              bucket)
SELECT id, now() - (g % 700) * interval '1 day',
       (ARRAY['{{vip,newsletter}}', '{{vip}}', '{{newsletter}}', '{{}}'])[g % 4 + 1]::text[],
       'en', 'shop.example', jsonb_build_object('score', jsonb_build_object('n', g % 100)),
       ('x' || substr(encode(sha256(convert_to(id::text, 'UTF8')), 'hex'), 1, 4))::bit(16)::int
         % 100
FROM (SELECT md5($1 || g)::uuid AS id, g FROM generate_series(1, $2) g) s
"""
_SEED_ORDERS = f"""
WITH o AS (
    INSERT INTO {FACTS}.orders (order_id, contact_id, origin_contact_id, currency, total,
                                place_time, cancelled)
    SELECT md5($1 || g || '-' || k)::uuid, md5($1 || g)::uuid, md5($1 || g)::uuid, 'EUR',
           1000 + (g * 997 + k * 131) % 9000, now() - ((g + k * 37) % 700) * interval '1 day',
           (g + k) % 10 = 0
    FROM generate_series(1, $2) g CROSS JOIN LATERAL generate_series(1, g % 5) k
    RETURNING order_id, contact_id, place_time
)
INSERT INTO {FACTS}.purchases (order_id, sku, contact_id, origin_contact_id, quantity, time)
SELECT order_id, 'SKU-' || lpad((abs(hashtext(order_id::text)) % 200)::text, 4, '0'),
       contact_id, contact_id, 1, place_time
FROM o
"""


async def _seed_facts(pool: asyncpg.Pool, contacts: int, tag: str) -> None:
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_SEED_CONTACTS, tag, contacts)
        await conn.execute(_SEED_ORDERS, tag, contacts)
    for table in ("contacts", "orders", "purchases"):
        await pool.execute(f"ANALYZE {FACTS}.{table}")
    log(f"  seeded {contacts:,} contacts' facts in {time.perf_counter() - started:.1f}s")


async def _raw_backfill(pool: asyncpg.Pool, key: str, orders: str, table: str) -> tuple[float, int]:
    sql = _BACKFILL_SQL.format(table=table, facts=FACTS, orders=orders.format(facts=FACTS))
    async with pool.acquire() as conn:
        await conn.execute(f"TRUNCATE {table}")
        started = time.perf_counter()
        status = await conn.execute(sql, key)
        took = time.perf_counter() - started
    return took, int(status.rsplit(" ", 1)[-1])


async def _create_and_wait(
    store: PostgresEventStore, proc: asyncio.subprocess.Process, key: str, rule: str
) -> dict[str, Any]:
    """CreateSegment, then wait until the engine has committed the batch holding its
    SegmentCreated: every contact evaluated, every membership event appended."""
    meter = CpuMeter({"project": proc.pid or 0})
    meter.start()
    started = time.perf_counter()
    segment = await SegmentCommands(store, SegmentQueries(store.pool)).create(
        key, key, "bench", rule, request_id=f"bench-{key}"
    )
    [created] = await store.read_stream(f"segment-{segment.segment_id}")
    await wait_for_checkpoint(store.pool, ENGINE, created.position, timeout=3600)
    took = time.perf_counter() - started
    cpu = meter.stop()
    members = await store.pool.fetchval(
        f"SELECT count(*) FROM {FACTS}.memberships WHERE segment_key = $1", key
    )
    events = await store.pool.fetchval(
        """SELECT count(*) FROM eventstore.events
           WHERE category = 'segmentmembership' AND position > $1 AND data->>'segment_key' = $2""",
        created.position,
        key,
    )
    timers = await store.pool.fetchval(
        f"SELECT count(*) FROM {FACTS}.timers WHERE segment_id = $1",
        uuid.UUID(segment.segment_id),
    )
    return {
        "rule": rule,
        "seconds": round(took, 2),
        "members": int(members),
        "membership_events": int(events),
        "timers": int(timers),
        **cpu,
    }


async def backfill(store: PostgresEventStore, dsn: str, notes: list[str]) -> Metric:
    tag = uuid.uuid4().hex[:6]
    runs: dict[str, dict[str, Any]] = {}
    async with (
        _contacts_serve(dsn) as target,
        _project(store, dsn, target, "segmentation-project-backfill", notes) as proc,
    ):
        await _seed_facts(store.pool, int(scaled(BACKFILL_CONTACTS, 1000)), tag)
        contacts = int(await store.pool.fetchval(f"SELECT count(*) FROM {FACTS}.contacts"))
        for name, rule, _ in BACKFILLS:
            await _settle(store, 600)
            log(f"  CreateSegment {rule!r} over {contacts:,} contacts")
            runs[name] = await _create_and_wait(store, proc, f"backfill-{name}-{tag}", rule)
            runs[name]["contacts_per_s"] = round(contacts / runs[name]["seconds"], 1)
            log(
                f"  engine: {runs[name]['seconds']:.1f}s, {runs[name]['contacts_per_s']:,.0f}"
                f" contacts/s, {runs[name]['members']:,} members,"
                f" {runs[name]['timers']:,} timers"
            )
    table = f"bench_backfill_{tag}"
    await store.pool.execute(
        f"CREATE TABLE {table} (segment_key text, contact_id uuid,"
        " PRIMARY KEY (segment_key, contact_id))"
    )
    for name, _, orders_sql in BACKFILLS:
        key = f"backfill-{name}-{tag}"
        raws = [await _raw_backfill(store.pool, key, orders_sql, table) for _ in range(3)]
        runs[name]["raw_contacts_per_s"] = [round(contacts / t, 1) for t, _ in raws]
        runs[name]["raw_rows"] = raws[0][1]
        runs[name]["matches_baseline"] = raws[0][1] == runs[name]["members"]
        if not runs[name]["matches_baseline"]:
            notes.append(
                f"segment_backfill ({name}): engine {runs[name]['members']} members,"
                f" raw INSERT .. SELECT {raws[0][1]}"
            )
    plain = runs["plain"]
    return Metric(
        name="segment_backfill",
        value=plain["contacts_per_s"],
        unit="contacts/s",
        baseline=median(plain["raw_contacts_per_s"]),
        baseline_desc=(
            "raw INSERT .. SELECT of the same membership rows from the facts tables"
            " (the rule as a WHERE clause) into a scratch table"
        ),
        samples=[plain["contacts_per_s"]],
        baseline_samples=plain["raw_contacts_per_s"],
        extra={
            "contacts": contacts,
            **plain,
            "with_window": runs["window"],
            "mautic_contacts_per_s": 108,
            "note": (
                "CreateSegment returned -> the engine's checkpoint passed the SegmentCreated"
                " (its batch, with every membership event, committed). Default 50k contacts,"
                " not the goal's 200k (BENCH_SCALE=4): at 200k the one append of ~60k"
                " membership events takes about asyncpg's 60 s command_timeout and the batch"
                " may be retried (one run: 172 s, 1,163 contacts/s)"
            ),
        },
    )


# --- 3. segmentation_projection ------------------------------------------------------------------


def _contact_update(contact_id: str, n: int) -> StreamAppend:
    """A ContactUpdated of the tags (not personal: published in clear)."""
    tags = [["vip"], ["newsletter", "vip"], ["newsletter"], []][n % 4]
    data = {"contact_id": contact_id, "changed_fields": ["tags"], "tags": tags}
    event = NewEvent(UPDATED, data, metadata())
    return StreamAppend(f"contact-{contact_id}", [event], StreamState.ANY)


def _abandoned(contact_id: str, n: int) -> StreamAppend:
    cart_id = str(uuid.uuid4())
    sku, name, price = CATALOGUE[n % 20]
    data = {
        "cart_id": cart_id,
        "contact_id": contact_id,
        "currency": CURRENCY,
        "subtotal": price,
        "items": [{"sku": sku, "name": name, "quantity": 1, "unit_price": price, "discount": 0}],
        "last_activity_time": timestamp_text(datetime.now(UTC)),
        "abandon_after_seconds": 3600,
    }
    event = NewEvent(carts.ABANDONED, data, metadata())
    return StreamAppend(carts.stream_of(cart_id), [event], StreamState.NO_STREAM)


async def _backlog(
    store: PostgresEventStore, target: str, events: int, tag: str
) -> tuple[int, int, dict[str, int]]:
    """Append a backlog of ~``events`` upstream events, as live traffic would leave them:
    ContactRegistered (10%, through contacts' import, personal fields sealed), ContactUpdated
    of tags (10%), order lifecycles (placed, 70% paid, 20% refunded, 10% cancelled: ~75%),
    CartAbandoned (5%). Returns the positions before and at its end, and its count by type."""
    start = await store.head_position()
    rng = random.Random(20_261_202)
    ids = await _import_contacts(store, target, max(100, events // 10), tag)
    lifecycles = [_lifecycle(rng, i, ids[i % len(ids)]) for i in range(int(events * 0.75 / 2.0))]
    txns = _schedule(lifecycles)
    extra = [_contact_update(c, i) for i, c in enumerate(ids)]
    extra += [_abandoned(ids[rng.randrange(len(ids))], i) for i in range(events // 20)]
    for append in extra:  # each in some transaction of the schedule (distinct streams)
        txns[rng.randrange(len(txns))].append(append)
    for appends in txns:
        await store.append_multi(appends)
    end = await store.head_position()
    rows = await store.pool.fetch(
        """SELECT type, count(*) FROM eventstore.events
           WHERE position > $1 AND position <= $2 AND category = ANY($3::text[]) GROUP BY type""",
        start,
        end,
        list(CATEGORIES),
    )
    return start, end, {r[0].rsplit(".", 1)[-1]: int(r[1]) for r in rows}


async def _catch_up(
    store: PostgresEventStore,
    target: str,
    start: int,
    end: int,
    count: int,
    with_segments: bool,
    label: str,
) -> float:
    """A fresh engine (its own checkpoint and facts schema) from ``start`` to ``end``."""
    contacts = GrpcContactVersions(target, tokens.SERVICE_TOKEN)
    engine = MembershipEngine(store, contacts)
    runner = ProjectionRunner(store, engine, name=label, schema=label, batch_size=BATCH)
    try:
        async with store.pool.acquire() as conn:
            await ensure_schema(conn, engine, label)
            if with_segments:  # as SegmentCreated leaves them in the engine's table
                await conn.executemany(
                    f"""INSERT INTO {quote_ident(label)}.segments
                            (segment_id, key, rule, rule_version) VALUES ($1, $2, $3, 1)""",
                    [
                        (uuid.uuid4(), key, rules.format_rule(rules.parse(rule)))
                        for key, rule in segment_rules("")
                    ],
                )
        await _set_checkpoint(store.pool, label, start)
        started = time.perf_counter()
        await runner.catch_up(until=end)
        rate = count / (time.perf_counter() - started)
        members = await store.pool.fetchval(
            f"SELECT count(*) FROM {quote_ident(label)}.memberships"
        )
        log(f"  {label}: {rate:,.0f} events/s, {members:,} memberships at the end")
        return rate
    finally:
        await contacts.close()


async def projection(store: PostgresEventStore, dsn: str, notes: list[str]) -> Metric:
    tag = uuid.uuid4().hex[:6]
    async with _contacts_serve(dsn) as target:
        start, end, by_type = await _backlog(store, target, int(scaled(BACKLOG_EVENTS, 2000)), tag)
        count = sum(by_type.values())
        log(f"  backlog of {count:,} events: {by_type}")

        def round_of(with_segments: bool) -> Callable[[int], Awaitable[float]]:
            def one(r: int) -> Awaitable[float]:
                label = f"bench_seg_{tag}_{'s50' if with_segments else 's0'}_{r}"
                return _catch_up(store, target, start, end, count, with_segments, label)

            return one

        without, with50 = await interleaved(
            round_of(False), round_of(True), rounds=2, label="segmentation_projection", budget=20
        )
    return Metric(
        name="segmentation_projection",
        value=median(with50),
        unit="events/s",
        baseline=median(without),
        baseline_desc="the same engine catching up the same backlog with no segment",
        samples=with50,
        baseline_samples=without,
        extra={
            "events": count,
            "by_type": by_type,
            "segments": 50,
            "batch_size": BATCH,
            "note": "ProjectionRunner.catch_up in the bench process, contacts serve as target",
        },
    )
