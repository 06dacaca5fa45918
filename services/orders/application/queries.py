"""Queries over the orders and carts read models (orders_rm, carts_rm). Never another service's
tables."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson

from services.orders.adapters.readmodel import load_order
from services.orders.domain.order import Order
from shared.domain import paging, rfm
from shared.domain.errors import Invalid

INT64_MAX = 2**63 - 1  # the API's money fields are int64


@dataclass(frozen=True)
class CurrencyMetrics:
    """One currency's figures. The read model keeps exact sums (numeric); ``revenue`` and
    ``refunded`` saturate at INT64_MAX, which only a customer with thousands of maximal orders
    reaches. The average is taken from the exact revenue, so it is always exact."""

    currency: str
    order_count: int
    revenue: int
    refunded: int
    average_order_value: int
    first_order_at: datetime
    last_order_at: datetime
    recency: int
    frequency: int
    monetary: int

    @classmethod
    def of(cls, r: asyncpg.Record, recency: int, frequency: int, monetary: int) -> CurrencyMetrics:
        revenue, count = int(r["revenue"]), r["order_count"]
        return cls(
            r["currency"],
            count,
            min(revenue, INT64_MAX),
            min(int(r["refunded"]), INT64_MAX),
            (2 * revenue + count) // (2 * count),  # half up
            r["first_order_at"],
            r["last_order_at"],
            recency,
            frequency,
            monetary,
        )

    @property
    def group(self) -> str:
        return rfm.group(self.recency, self.frequency)


# Per currency: the contact's row, how many customers there are, and how many are strictly
# worse on each measure (see domain/rfm.py). Each count is an index-only range scan.
_METRICS = """
SELECT m.currency, m.order_count, m.revenue, m.refunded, m.first_order_at, m.last_order_at,
       (SELECT count(*) FROM {s}.customer_metrics x WHERE x.currency = m.currency) AS n,
       (SELECT count(*) FROM {s}.customer_metrics x
         WHERE x.currency = m.currency AND x.last_order_at < m.last_order_at) AS r_below,
       (SELECT count(*) FROM {s}.customer_metrics x
         WHERE x.currency = m.currency AND x.order_count < m.order_count) AS f_below,
       (SELECT count(*) FROM {s}.customer_metrics x
         WHERE x.currency = m.currency AND x.revenue < m.revenue) AS m_below
FROM {s}.customer_metrics m WHERE m.contact_id = $1 ORDER BY m.currency
"""


class OrderQueries:
    def __init__(self, pool: asyncpg.Pool, schema: str = "orders_rm", carts: str = "carts_rm"):
        self.pool = pool
        self.schema = schema
        self.carts = carts

    async def metrics(self, contact_id: str) -> list[CurrencyMetrics]:
        rows = await self.pool.fetch(_METRICS.format(s=self.schema), uuid.UUID(contact_id))
        return [
            CurrencyMetrics.of(
                r,
                rfm.score(r["r_below"], r["n"]),
                rfm.score(r["f_below"], r["n"]),
                rfm.score(r["m_below"], r["n"]),
            )
            for r in rows
        ]

    async def list_orders(
        self, contact_id: str, state: str, size: int, token: str
    ) -> tuple[list[Order], str]:
        """Newest first; keyset-paged on (placed_at, order_id)."""
        fingerprint = f"{contact_id}|{state}"
        where: list[str] = []
        args: list[object] = []
        if contact_id:
            args.append(uuid.UUID(contact_id))
            where.append(f"contact_id = ${len(args)}")
        if state:
            args.append(state)
            where.append(f"state = ${len(args)}")
        if token:
            after = paging.decode_token(token, fingerprint)
            try:
                at, oid = datetime.fromisoformat(after[0]), uuid.UUID(after[1])
            except (ValueError, TypeError, IndexError):
                raise Invalid([("page_token", "INVALID_PAGE_TOKEN", "malformed")]) from None
            args += [at, oid]
            where.append(f"(placed_at, order_id) < (${len(args) - 1}, ${len(args)})")
        args.append(size + 1)
        sql = (
            f"SELECT doc FROM {self.schema}.orders"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY placed_at DESC, order_id DESC LIMIT ${len(args)}"
        )
        rows = await self.pool.fetch(sql, *args)
        found = [load_order(orjson.loads(r["doc"])) for r in rows]
        page, more = found[:size], len(found) > size
        token = (
            paging.encode_token([page[-1].placed_at.isoformat(), page[-1].order_id], fingerprint)
            if more
            else ""
        )
        return page, token

    async def idle_carts(self, after: timedelta, limit: int = 500) -> list[tuple[str, datetime]]:
        """Carts idle for at least ``after`` by the read model, each with the database's now
        (the clock their activity times come from)."""
        rows = await self.pool.fetch(
            f"""SELECT cart_id::text, now() AS now FROM {self.carts}.carts
                WHERE state IN ('OPEN', 'CHECKOUT') AND NOT abandoned AND item_count > 0
                  AND last_activity_at <= now() - $1::interval
                ORDER BY last_activity_at LIMIT $2""",
            after,
            limit,
        )
        return [(r["cart_id"], r["now"]) for r in rows]
