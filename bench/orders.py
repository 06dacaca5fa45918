"""Orders benchmarks, mirroring the contacts ones:

- grpc_place_order: PlaceOrder with a contact id (no contacts-service hop) through real orders
  serve processes, next to the trivial grpc.aio server (bench/grpc_load.py's compare).
- projection_rebuild_metrics: a side-by-side rebuild (shared.projections.rebuild) of the orders
  read model with its customer metrics, next to a raw set-based upsert of the same rows.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from bench.common import Metric, interleaved, log, median, metadata, scaled
from bench.grpc_load import Service, Workload, compare
from bench.procs import free_port
from bench.projection import REBUILD_BATCH
from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as pb
from crm.orders.v1 import orders_pb2_grpc as pb_grpc
from services.orders.adapters.readmodel import ORDERS_DDL, OrdersProjection
from services.orders.domain import order as orders
from shared.eventstore import NewEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.rebuild import rebuild
from shared.projections.schema import quote_ident

CURRENCY = "EUR"
# A shop's catalogue: sku, name, unit price in cents.
CATALOGUE = [(f"SKU-{n:04d}", f"Product {n}", 199 + 250 * (n % 40)) for n in range(200)]
_LOAD_RNG = random.Random()

# --- grpc_place_order ---------------------------------------------------------------------------


def _items(rng: random.Random, i: int) -> list[dict[str, Any]]:
    """2 or 3 distinct lines; the first one discounted on every 4th order."""
    lines = rng.sample(CATALOGUE, 2 + i % 2)
    return [
        {
            "sku": sku,
            "name": name,
            "quantity": 1 + (i + k) % 3,
            "unit_price": price,
            "discount": price // 10 if k == 0 and i % 4 == 0 else 0,
        }
        for k, (sku, name, price) in enumerate(lines)
    ]


def _place_request(run: str, w: int, i: int) -> pb.PlaceOrderRequest:
    return pb.PlaceOrderRequest(
        customer=pb.CustomerRef(contact_id=str(uuid.uuid4())),
        currency=CURRENCY,
        items=[epb.LineItem(**item) for item in _items(_LOAD_RNG, i)],
        request_id=uuid.uuid4().hex,
    )


PLACE_ORDER = Workload(pb_grpc.OrdersServiceStub, "PlaceOrder", _place_request)


def _orders_env() -> dict[str, str]:
    # No webhook endpoint; the contacts target is a closed port, so a call that needed the
    # contacts service would fail (UNAVAILABLE, counted as an error) instead of hiding a hop.
    return {"WEBHOOK_PORT": "0", "CONTACTS_TARGET": f"127.0.0.1:{free_port()}"}


ORDERS = Service("orders", PLACE_ORDER, _orders_env)


async def grpc_place_order(dsn: str, notes: list[str]) -> tuple[list[Metric], dict[str, Any]]:
    return await compare(
        dsn, notes, ORDERS, "grpc_place_order", "orders/s", configs_key="grpc_place_order_configs"
    )


# --- projection_rebuild_metrics: seeding ---------------------------------------------------------

SEED_ORDERS = 50_000  # ~2 events per order: ~100k events, as many as the contacts rebuild replays
ORDERS_PER_TXN = 100
# An order's next event is appended this many of its writer's transactions later, so most
# follow-ups land in a later rebuild page than the order itself (the projection has to load the
# stored row, as it does live).
FOLLOW_UP_LAG = 20
SEED_WRITERS = 2
Event = tuple[str, dict[str, Any]]


def _lifecycle(rng: random.Random, i: int, contact_id: str) -> tuple[str, list[Event]]:
    """One order's events through the domain's decide/evolve: all placed; 70% paid (of all
    orders 10% then fully and 10% partly refunded); 10% cancelled unpaid; 20% left placed."""
    order_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    at = datetime.now(UTC) - timedelta(seconds=rng.uniform(0, 2 * 365 * 86400))
    events = orders.decide_place(
        order_id, contact_id, CURRENCY, _items(rng, i), placed_at=at, source="bench"
    )
    o = orders.evolve(None, *events[0], at, 0)
    kind = i % 10
    if kind <= 6:
        paid = orders.decide_pay(o, 0, f"psp-{i}")
        o = orders.evolve(o, *paid[0], at, 1)
        events += paid
        if kind <= 1:
            amount = o.paid if kind == 0 else max(1, o.paid // 3)
            events += orders.decide_refund(o, amount, [], "returned", "")
    elif kind == 7:
        events += orders.decide_cancel(o, "changed their mind")
    return orders.stream_of(order_id), events


def _schedule(lifecycles: list[tuple[str, list[Event]]]) -> list[list[StreamAppend]]:
    """One writer's transactions: ORDERS_PER_TXN new orders each, an order's k-th event
    k * FOLLOW_UP_LAG transactions after its first (so its expected version always holds)."""
    txns: list[list[StreamAppend]] = []
    for j in range(0, len(lifecycles), ORDERS_PER_TXN):
        first = j // ORDERS_PER_TXN
        for stream, events in lifecycles[j : j + ORDERS_PER_TXN]:
            for k, (type_, data) in enumerate(events):
                slot = first + k * FOLLOW_UP_LAG
                txns.extend([] for _ in range(slot + 1 - len(txns)))
                expected = k - 1 if k else StreamState.NO_STREAM
                txns[slot].append(
                    StreamAppend(stream, [NewEvent(type_, data, metadata())], expected)
                )
    return [t for t in txns if t]


async def seed(store: PostgresEventStore, count: int) -> int:
    """``count`` orders of count // 3 customers; returns the number of events appended."""
    rng = random.Random(20_240_601)
    contacts = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count // 3 or 1)]
    lifecycles = [_lifecycle(rng, i, rng.choice(contacts)) for i in range(count)]
    schedules = [_schedule(lifecycles[w::SEED_WRITERS]) for w in range(SEED_WRITERS)]

    async def writer(txns: list[list[StreamAppend]]) -> int:
        n = 0
        for appends in txns:
            await store.append_multi(appends)
            n += len(appends)
        return n

    started = time.perf_counter()
    appended = sum(await asyncio.gather(*(writer(s) for s in schedules)))
    took = time.perf_counter() - started
    log(f"  seeded {count:,} orders ({appended:,} events) in {took:.1f}s")
    return appended


# --- projection_rebuild_metrics: the raw baseline -----------------------------------------------

_RAW_ORDERS = """
INSERT INTO {s}.orders (order_id, contact_id, currency, state, total, refunded, placed_at,
                        version, doc)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                     $7::timestamptz[], $8::bigint[], $9::jsonb[])
ON CONFLICT (order_id) DO UPDATE SET
    state = excluded.state, refunded = excluded.refunded, version = excluded.version,
    doc = excluded.doc
"""
_RAW_METRICS = """
INSERT INTO {s}.customer_metrics
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::timestamptz[], $7::timestamptz[])
ON CONFLICT (contact_id, currency) DO UPDATE SET
    order_count = excluded.order_count, revenue = excluded.revenue, refunded = excluded.refunded,
    first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at
"""
_RAW_GONE = """
DELETE FROM {s}.customer_metrics m USING unnest($1::uuid[], $2::text[]) AS g(contact_id, currency)
WHERE m.contact_id = g.contact_id AND m.currency = g.currency
"""
Row = dict[str, Any]  # the order's fields, as stored in doc
Key = tuple[str, str]  # contact_id, currency
_STATE_OF = {
    orders.PAID: "PAID",
    orders.SHIPPED: "SHIPPED",
    orders.DELIVERED: "DELIVERED",
    orders.CANCELLED: "CANCELLED",
}


def _fold(row: Row | None, type_: str, d: Mapping[str, Any], v: int, at: datetime) -> Row:
    if type_ == orders.PLACED or row is None:
        return {**d, "state": "PLACED", "paid": 0, "refunded": 0, "version": v, "updated_at": at}
    row["version"], row["updated_at"] = v, at
    if type_ == orders.PAID:
        row["paid"] = d["amount"]
    if type_ == orders.REFUNDED:
        row["refunded"] = d["refunded_total"]
        if d.get("full"):
            row["state"] = "REFUNDED"
    else:
        row["state"] = _STATE_OF.get(type_, row["state"])
    return row


def _metrics_rows(
    keys: set[Key], state: dict[str, Row], placed: dict[str, datetime], by_key: dict[Key, list[str]]
) -> tuple[list[list[Any]], list[Key]]:
    """Per touched (contact, currency): count, net revenue, refunded, first and last order
    (cancelled orders do not count); the keys left without a counted order."""
    rows, gone = [], []
    for key in keys:
        counted = [o for o in by_key[key] if state[o]["state"] != "CANCELLED"]
        if not counted:
            gone.append(key)
            continue
        ts = [placed[o] for o in counted]
        rows.append(
            [
                *key,
                len(counted),
                sum(state[o]["total"] - state[o]["refunded"] for o in counted),
                sum(state[o]["refunded"] for o in counted),
                min(ts),
                max(ts),
            ]
        )
    return rows, gone


async def _raw_upsert(
    pool: asyncpg.Pool, events: list[tuple[str, dict[str, Any], int, datetime]], schema: str
) -> float:
    """Fold per batch of REBUILD_BATCH events in memory, upsert the touched orders and their
    customers' metrics with one statement each (no SELECT of stored rows, no checkpoint)."""
    s = quote_ident(schema)
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {s}")
        await conn.execute(f"SET search_path TO {s}")
        await conn.execute(ORDERS_DDL)
        await conn.execute("RESET search_path")
        upsert_orders, upsert_metrics = _RAW_ORDERS.format(s=s), _RAW_METRICS.format(s=s)
        delete_metrics = _RAW_GONE.format(s=s)
        dumps = orjson.dumps
        started = time.perf_counter()
        state: dict[str, Row] = {}
        placed: dict[str, datetime] = {}
        by_key: dict[Key, list[str]] = {}
        for i in range(0, len(events), REBUILD_BATCH):
            touched: dict[str, Row] = {}
            for type_, d, v, at in events[i : i + REBUILD_BATCH]:
                oid = d["order_id"]
                touched[oid] = state[oid] = _fold(state.get(oid), type_, d, v, at)
                if type_ == orders.PLACED:
                    placed[oid] = datetime.fromisoformat(d["place_time"])
                    by_key.setdefault((d["contact_id"], d["currency"]), []).append(oid)
            rows = touched.values()
            keys = {(r["contact_id"], r["currency"]) for r in rows}
            metric_rows, gone = _metrics_rows(keys, state, placed, by_key)
            async with conn.transaction():
                await conn.execute(
                    upsert_orders,
                    list(touched),
                    [r["contact_id"] for r in rows],
                    [r["currency"] for r in rows],
                    [r["state"] for r in rows],
                    [r["total"] for r in rows],
                    [r["refunded"] for r in rows],
                    [placed[o] for o in touched],
                    [r["version"] for r in rows],
                    [dumps(r).decode() for r in rows],
                )
                if metric_rows:
                    await conn.execute(upsert_metrics, *map(list, zip(*metric_rows, strict=True)))
                if gone:
                    await conn.execute(delete_metrics, *map(list, zip(*gone, strict=True)))
        return len(events) / (time.perf_counter() - started)


# --- projection_rebuild_metrics -------------------------------------------------------------------

_SUMMARY = """
SELECT (SELECT count(*) FROM {s}.orders), (SELECT coalesce(sum(total), 0) FROM {s}.orders),
       (SELECT count(*) FROM {s}.customer_metrics),
       (SELECT coalesce(sum(order_count), 0) FROM {s}.customer_metrics),
       (SELECT coalesce(sum(revenue), 0) FROM {s}.customer_metrics),
       (SELECT coalesce(sum(refunded), 0) FROM {s}.customer_metrics)
"""
_SUMMARY_FIELDS = ("orders", "orders_total", "metrics_rows", "order_count", "revenue", "refunded")


async def _summary(pool: asyncpg.Pool, schema: str) -> dict[str, int]:
    row = await pool.fetchrow(_SUMMARY.format(s=quote_ident(schema)))
    return {k: int(v) for k, v in zip(_SUMMARY_FIELDS, row, strict=True)}


async def rebuild_metrics(
    store: PostgresEventStore, raw_pool: asyncpg.Pool, notes: list[str]
) -> Metric:
    await seed(store, int(scaled(SEED_ORDERS, 1000)))
    rows = await raw_pool.fetch(
        """SELECT type, data::text, version, recorded_at FROM eventstore.events
           WHERE category = 'order' ORDER BY position"""
    )
    events = [(r[0], orjson.loads(r[1]), r[2], r[3]) for r in rows]
    by_type: dict[str, int] = {}
    for e in events:
        name = e[0].removeprefix(orders.PREFIX)
        by_type[name] = by_type.get(name, 0) + 1
    placed = by_type.get("OrderPlaced", 0)
    log(f"  rebuilding from {len(events):,} order events ({by_type})")
    tag = uuid.uuid4().hex[:6]
    raw_schemas: list[str] = []

    async def raw(r: int) -> float:
        raw_schemas.append(f"bench_orders_up_{tag}_{r}")
        return await _raw_upsert(raw_pool, events, raw_schemas[-1])

    async def via_rebuild(_r: int) -> float:
        started = time.perf_counter()
        await rebuild(store, OrdersProjection(), batch_size=REBUILD_BATCH)
        return len(events) / (time.perf_counter() - started)

    raws, stores = await interleaved(
        raw, via_rebuild, rounds=2, label="projection_rebuild_metrics", budget=25
    )
    # The switched-in read model must hold every order, and customers with counted orders.
    got = await _summary(raw_pool, OrdersProjection.schema)
    if got["orders"] != placed or not got["metrics_rows"]:
        raise RuntimeError(f"rebuilt orders_rm holds {got}, expected {placed} orders and metrics")
    want = await _summary(raw_pool, raw_schemas[-1])
    if got != want:
        notes.append(f"projection_rebuild_metrics: orders_rm {got} != raw baseline {want}")
    return Metric(
        name="projection_rebuild_metrics",
        value=median(stores),
        unit="events/s",
        baseline=median(raws),
        baseline_desc=(
            "raw unnest upserts of orders + customer_metrics, folded in memory,"
            f" {REBUILD_BATCH}/txn"
        ),
        samples=stores,
        baseline_samples=raws,
        extra={
            "events": len(events),
            "by_type": by_type,
            "batch_size": REBUILD_BATCH,
            "read_model": got,
            "matches_baseline": got == want,
            "shape": f"{ORDERS_PER_TXN} orders/txn, follow-ups {FOLLOW_UP_LAG} txns later",
        },
    )
