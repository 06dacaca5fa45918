"""The orders read models.

- OrdersProjection (schema orders_rm): one row per order (query columns plus the folded order
  as JSON) and customer_metrics, one row per (contact, currency) with at least one counted order.
- CartsProjection (schema carts_rm): one row per cart; the abandonment timer polls it for idle
  carts and PlaceOrder asks it for a contact's abandoned carts.

Both fold a batch with the domain's own evolve() over the rows the batch touches (one SELECT,
one upsert), and recompute the metrics of the touched (contact, currency) pairs with one
set-based statement, so a rebuild runs at batch speed. The runner hands them events upcast to
the current shape of their published messages, however old (shared/events/upcast.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import asyncpg
import orjson

import crm.orders.v1.events_pb2  # noqa: F401  (the descriptors the runner's upcaster reads)
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from services.orders.domain.cart import Cart
from services.orders.domain.order import Order
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

ORDERS_DDL = """
CREATE TABLE orders (
    order_id    uuid        PRIMARY KEY,
    contact_id  uuid        NOT NULL,
    currency    text        NOT NULL,
    state       text        NOT NULL,
    total       bigint      NOT NULL,
    refunded    bigint      NOT NULL,
    placed_at   timestamptz NOT NULL,
    version     bigint      NOT NULL,
    doc         jsonb       NOT NULL
);
CREATE INDEX orders_contact ON orders (contact_id, placed_at DESC, order_id DESC);
CREATE INDEX orders_state ON orders (state, placed_at DESC, order_id DESC);
CREATE INDEX orders_placed ON orders (placed_at DESC, order_id DESC);
-- Sums over any number of orders are numeric: each order fits bigint, their sum need not.
CREATE TABLE customer_metrics (
    contact_id     uuid        NOT NULL,
    currency       text        NOT NULL,
    order_count    bigint      NOT NULL,
    revenue        numeric     NOT NULL,
    refunded       numeric     NOT NULL,
    first_order_at timestamptz NOT NULL,
    last_order_at  timestamptz NOT NULL,
    PRIMARY KEY (contact_id, currency)
);
-- RFM ranks count the customers strictly below on each measure, within a currency.
CREATE INDEX customer_metrics_recency ON customer_metrics (currency, last_order_at);
CREATE INDEX customer_metrics_frequency ON customer_metrics (currency, order_count);
CREATE INDEX customer_metrics_monetary ON customer_metrics (currency, revenue);
"""

_UPSERT_ORDERS = """
INSERT INTO orders (order_id, contact_id, currency, state, total, refunded, placed_at, version, doc)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                     $7::timestamptz[], $8::bigint[], $9::jsonb[])
ON CONFLICT (order_id) DO UPDATE SET
    state = excluded.state, refunded = excluded.refunded, version = excluded.version,
    doc = excluded.doc
WHERE orders.version < excluded.version
"""

# Cancelled orders do not count; revenue is net of refunds. sum(bigint) is numeric: exact, and
# stored as such (no bigint overflow however many orders a customer has).
_METRICS = """
WITH k AS (SELECT DISTINCT contact_id, currency
           FROM unnest($1::uuid[], $2::text[]) AS k(contact_id, currency)),
agg AS (
    SELECT k.contact_id, k.currency, count(o.order_id) AS n,
           coalesce(sum(o.total - o.refunded), 0) AS revenue,
           coalesce(sum(o.refunded), 0) AS refunded,
           min(o.placed_at) AS first_at, max(o.placed_at) AS last_at
    FROM k LEFT JOIN orders o
      ON o.contact_id = k.contact_id AND o.currency = k.currency AND o.state <> 'CANCELLED'
    GROUP BY k.contact_id, k.currency
),
gone AS (
    DELETE FROM customer_metrics m USING agg
    WHERE agg.n = 0 AND m.contact_id = agg.contact_id AND m.currency = agg.currency
)
INSERT INTO customer_metrics AS m
SELECT contact_id, currency, n, revenue, refunded, first_at, last_at FROM agg WHERE n > 0
ON CONFLICT (contact_id, currency) DO UPDATE SET
    order_count = excluded.order_count, revenue = excluded.revenue, refunded = excluded.refunded,
    first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at
"""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    raise TypeError(type(value))


def dump(state: Order | Cart) -> str:
    # orjson serialises the (slotted) dataclass itself: ~20x faster than dataclasses.asdict.
    return orjson.dumps(state, default=_json_default).decode()


_ORDER_TIMES = {"placed_at", "updated_at"}
_CART_TIMES = {"created_at", "last_activity_at", "abandoned_at"}


def load_order(doc: dict[str, Any]) -> Order:
    d = {f.name: doc[f.name] for f in fields(Order)}
    for k in _ORDER_TIMES:
        d[k] = datetime.fromisoformat(d[k]) if d[k] else None
    d["items"] = tuple(d["items"])
    d["shipments"] = tuple({**s, "at": datetime.fromisoformat(s["at"])} for s in d["shipments"])
    d["refund_ids"] = frozenset(d["refund_ids"])
    d["returned"] = tuple((s, q) for s, q in d["returned"])
    return Order(**d)


def load_cart(doc: dict[str, Any]) -> Cart:
    d = {f.name: doc[f.name] for f in fields(Cart)}
    for k in _CART_TIMES:
        d[k] = datetime.fromisoformat(d[k]) if d[k] else None
    d["items"] = tuple(d["items"])
    return Cart(**d)


async def _fold_batch(
    conn: asyncpg.Connection,
    events: Sequence[RecordedEvent],
    table: str,
    key: str,
    load: Any,
    evolve: Any,
) -> dict[str, Any]:
    """The touched aggregates after the batch, starting from their stored rows. Ids are keyed in
    PostgreSQL's canonical text form, the form the rows are read back in."""
    ids = list({str(uuid.UUID(e.data[key])) for e in events})
    rows = await conn.fetch(
        f"SELECT {key}::text AS id, doc FROM {table} WHERE {key} = any($1::uuid[])", ids
    )
    states: dict[str, Any] = {r["id"]: load(orjson.loads(r["doc"])) for r in rows}
    for e in events:
        i = str(uuid.UUID(e.data[key]))
        s = states.get(i)
        if s is not None and e.version <= s.version:
            continue  # already applied (a redelivered batch)
        if s is None and e.version != 0:
            # Its first event never reached this read model (parked?): park this one too,
            # visibly, rather than build a row from half a history.
            raise ValueError(f"{e.stream} v{e.version}: the read model has no row for {i}")
        states[i] = evolve(s, e.type, e.data, e.recorded_at, e.version)
    return states


class OrdersProjection:
    name = "orders"
    schema = "orders_rm"
    ddl = ORDERS_DDL
    categories: Sequence[str] | None = ("order",)
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        states: dict[str, Order] = await _fold_batch(
            conn, events, "orders", "order_id", load_order, orders.evolve
        )
        if not states:
            return
        os = list(states.values())
        await conn.execute(
            _UPSERT_ORDERS,
            [o.order_id for o in os],
            [o.contact_id for o in os],
            [o.currency for o in os],
            [o.state for o in os],
            [o.total for o in os],
            [o.refunded for o in os],
            [o.placed_at for o in os],
            [o.version for o in os],
            [dump(o) for o in os],
        )
        await conn.execute(_METRICS, [o.contact_id for o in os], [o.currency for o in os])


CARTS_DDL = """
CREATE TABLE carts (
    cart_id          uuid        PRIMARY KEY,
    contact_id       uuid        NOT NULL,
    state            text        NOT NULL,
    item_count       integer     NOT NULL,
    last_activity_at timestamptz NOT NULL,
    abandoned        boolean     NOT NULL,
    recovered        boolean     NOT NULL,
    abandoned_at     timestamptz,
    version          bigint      NOT NULL,
    doc              jsonb       NOT NULL
);
-- What the abandonment timer polls: carts with items, no order, never abandoned.
CREATE INDEX carts_idle ON carts (last_activity_at)
    WHERE state IN ('OPEN', 'CHECKOUT') AND NOT abandoned AND item_count > 0;
-- What PlaceOrder asks: a contact's abandoned carts that no order has recovered yet.
CREATE INDEX carts_abandoned ON carts (contact_id, abandoned_at)
    WHERE abandoned AND NOT recovered AND state <> 'CONVERTED';
"""

_UPSERT_CARTS = """
INSERT INTO carts (cart_id, contact_id, state, item_count, last_activity_at, abandoned, recovered,
                   abandoned_at, version, doc)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::integer[], $5::timestamptz[],
                     $6::boolean[], $7::boolean[], $8::timestamptz[], $9::bigint[], $10::jsonb[])
ON CONFLICT (cart_id) DO UPDATE SET
    state = excluded.state, item_count = excluded.item_count,
    last_activity_at = excluded.last_activity_at, abandoned = excluded.abandoned,
    recovered = excluded.recovered, abandoned_at = excluded.abandoned_at,
    version = excluded.version, doc = excluded.doc
WHERE carts.version < excluded.version
"""


class CartsProjection:
    name = "carts"
    schema = "carts_rm"
    ddl = CARTS_DDL
    categories: Sequence[str] | None = ("cart",)
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        states: dict[str, Cart] = await _fold_batch(
            conn, events, "carts", "cart_id", load_cart, carts.evolve
        )
        if not states:
            return
        cs = list(states.values())
        await conn.execute(
            _UPSERT_CARTS,
            [c.cart_id for c in cs],
            [c.contact_id for c in cs],
            [c.state for c in cs],
            [len(c.items) for c in cs],
            [c.last_activity_at for c in cs],
            [c.abandoned_at is not None for c in cs],
            [c.recovered for c in cs],
            [c.abandoned_at for c in cs],
            [c.version for c in cs],
            [dump(c) for c in cs],
        )
