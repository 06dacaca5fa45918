"""Orders' published events into the facts tables, a run of them at a time.

A page of the engine's events holds long runs of order and cart events between contacts'
events (a shop's traffic is mostly orders). ``write_run`` writes one run in a fixed number of
statements, whatever its length: the owners of its contacts (the survivor of a merged
contact), the new orders, their purchases, refunds, cancellations and carts. Within a run,
nothing one event writes is read by another's statement: the placements come before the
refunds and cancellations, and a cart's events are folded in log order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.segmentation.domain.facts import bucket_of
from shared.db.columns import columns
from shared.domain.timestamps import timestamp_from_text
from shared.eventstore import RecordedEvent

OX = "crm.orders.v1."  # orders event types
PLACED, REFUNDED, CANCELLED = OX + "OrderPlaced", OX + "OrderRefunded", OX + "OrderCancelled"
ABANDONED, RECOVERED = OX + "CartAbandoned", OX + "CartRecovered"
KINDS = (PLACED, REFUNDED, CANCELLED, ABANDONED, RECOVERED)

_OWNERS = """
WITH ids AS (SELECT * FROM unnest($1::uuid[], $2::int[]) AS t (contact_id, bucket)),
     known AS (INSERT INTO contacts (contact_id, bucket) SELECT contact_id, bucket FROM ids
               ON CONFLICT (contact_id) DO NOTHING)
SELECT ids.contact_id, coalesce(c.merged_into, ids.contact_id) AS owner
FROM ids LEFT JOIN contacts c USING (contact_id)
"""
_ORDERS = """
INSERT INTO orders (order_id, contact_id, origin_contact_id, currency, total, place_time)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                     $6::timestamptz[])
ON CONFLICT (order_id) DO NOTHING
"""
_PURCHASES = """
INSERT INTO purchases (order_id, sku, contact_id, origin_contact_id, quantity, time)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::int[],
                     $6::timestamptz[])
ON CONFLICT (order_id, sku) DO UPDATE SET quantity = purchases.quantity + excluded.quantity
"""
_REFUNDS = """
UPDATE orders o SET refunded = o.refunded + r.amount
FROM unnest($1::uuid[], $2::bigint[]) AS r (order_id, amount) WHERE o.order_id = r.order_id
"""
_CANCELS = "UPDATE orders SET cancelled = true WHERE order_id = ANY($1::uuid[])"
_CARTS = """
INSERT INTO carts (cart_id, contact_id, origin_contact_id, abandoned_time, recovered)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::bool[])
ON CONFLICT (cart_id) DO UPDATE SET
    abandoned_time = coalesce(excluded.abandoned_time, carts.abandoned_time),
    recovered = carts.recovered OR excluded.recovered
"""


@dataclass
class _Cart:
    origin: str
    abandoned: datetime | None = None
    recovered: bool = False


@dataclass
class _Purchase:
    origin: str
    quantity: int
    time: datetime


@dataclass
class _Run:
    orders: list[tuple[str, str, str, int, datetime]] = field(default_factory=list)
    purchases: dict[tuple[str, str], _Purchase] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)
    cancels: list[str] = field(default_factory=list)
    carts: dict[str, _Cart] = field(default_factory=dict)

    def add(self, e: RecordedEvent, cid: str) -> str:
        """Fold ``e`` in; return the fact group it changes."""
        d, t = e.data, e.type
        if t == PLACED:
            placed = timestamp_from_text(d["place_time"]) if d.get("place_time") else e.recorded_at
            oid = d["order_id"]
            self.orders.append((oid, cid, d["currency"], int(d.get("total", 0)), placed))
            for item in d.get("items", ()):
                if item.get("sku"):
                    row = self.purchases.setdefault((oid, item["sku"]), _Purchase(cid, 0, placed))
                    row.quantity += int(item["quantity"])
            return "orders"
        if t == REFUNDED:
            oid = d["order_id"]
            self.refunds[oid] = self.refunds.get(oid, 0) + int(d.get("amount", 0))
            return "orders"
        if t == CANCELLED:
            self.cancels.append(d["order_id"])
            return "orders"
        cart = self.carts.setdefault(d["cart_id"], _Cart(cid))
        if t == ABANDONED:
            cart.abandoned = e.recorded_at
        else:
            cart.recovered = True
        return "carts"


async def write_run(
    conn: asyncpg.Connection, events: Sequence[RecordedEvent]
) -> list[tuple[str, str, RecordedEvent]]:
    """Write a run of orders' events; return (owner contact id, fact group, event) in log
    order, for the events that changed a contact's facts."""
    run, named = _Run(), []
    for e in events:
        cid = e.data.get("contact_id", "")
        if cid and e.type in KINDS:
            named.append((cid, run.add(e, cid), e))
    if not named:
        return []
    ids = sorted({cid for cid, _, _ in named})
    rows = await conn.fetch(_OWNERS, [uuid.UUID(c) for c in ids], [bucket_of(c) for c in ids])
    owner = {str(r["contact_id"]): str(r["owner"]) for r in rows}
    if run.orders:
        orders = [(o, owner[c], c, cur, total, t) for o, c, cur, total, t in run.orders]
        await conn.execute(_ORDERS, *columns(orders, 6))
    if run.purchases:
        purchases = [
            (o, sku, owner[p.origin], p.origin, p.quantity, p.time)
            for (o, sku), p in run.purchases.items()
        ]
        await conn.execute(_PURCHASES, *columns(purchases, 6))
    if run.refunds:
        await conn.execute(_REFUNDS, *columns(list(run.refunds.items()), 2))
    if run.cancels:
        await conn.execute(_CANCELS, run.cancels)
    if run.carts:
        carts = [
            (k, owner[c.origin], c.origin, c.abandoned, c.recovered) for k, c in run.carts.items()
        ]
        await conn.execute(_CARTS, *columns(carts, 5))
    return [(owner[cid], group, e) for cid, group, e in named]
