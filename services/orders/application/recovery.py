"""Cart recovery by a later order: a reaction to OrderPlaced (shared/projections/reactor.py: one
leader across replicas, checkpointed, nothing in replay). It is off PlaceOrder's path on
purpose: most orders come from contacts without an abandoned cart, and the lookup cost every
order a query.

For each order it asks the carts read model for the contact's abandoned, unrecovered carts
within the recovery window, re-decides each from the cart's stream and appends CartRecovered
with an event id fixed per cart (a cart is recovered once, whichever order does it), caused by
the order's event. A cart converted into the order is recovered by PlaceOrder itself,
atomically; this reaction handles the "ordered another way" case.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from services.orders.application.aggregates import CART
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from shared.application.commands import CommandRunner
from shared.domain.timestamps import timestamp_from_text
from shared.eventstore import EventStore
from shared.projections.reactor import Cause


class CartRecovery:
    name = "cart-recovery"
    # What it did, for operators: one row per recovered cart.
    ddl = """CREATE TABLE recovered (
        cart_id uuid PRIMARY KEY, order_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT now())"""
    categories: Sequence[str] | None = ("order",)
    types: Sequence[str] | None = (orders.PLACED,)

    def __init__(
        self, store: EventStore, window: timedelta, carts_schema: str = "carts_rm"
    ) -> None:
        self.runner, self.window, self.carts_schema = CommandRunner(store), window, carts_schema

    async def react(self, conn: asyncpg.Connection, cause: Cause) -> None:
        e, d = cause.event, cause.event.data
        placed = timestamp_from_text(d["place_time"])
        rows = await conn.fetch(
            f"""SELECT cart_id::text FROM {self.carts_schema}.carts
                WHERE contact_id = $1 AND abandoned AND NOT recovered
                  AND state <> 'CONVERTED' AND abandoned_at >= $2 AND abandoned_at <= $3""",
            uuid.UUID(d["contact_id"]),
            placed - self.window,
            max(placed, e.recorded_at),
        )
        for r in rows:
            if r["cart_id"] != d.get("cart_id") and await self._recover(r["cart_id"], d, cause):
                await conn.execute(
                    "INSERT INTO recovered (cart_id, order_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING",
                    uuid.UUID(r["cart_id"]),
                    uuid.UUID(d["order_id"]),
                )

    async def _recover(self, cart_id: str, order: Mapping[str, Any], cause: Cause) -> bool:
        wrote = await self.runner.append_once(
            CART,
            cart_id,
            lambda c: carts.decide_recover(c, order["order_id"]),
            f"recover\n{cart_id}",
            cause.meta(),
        )
        if wrote is None:
            raise RuntimeError(f"cart {cart_id} kept moving; the runner will retry")
        return wrote
