"""The abandoned-cart timer: durable because its state is the carts read model and the carts'
own streams, not memory. Every replica may run it; CartCommands.abandon makes each cart's
CartAbandoned happen once (a fixed event id, appended at the version the decision read)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from services.orders.application.commands import CartCommands
from services.orders.application.queries import OrderQueries
from shared.supervision import sleep_unless_stopped

log = structlog.get_logger(__name__)


class AbandonmentTimer:
    def __init__(
        self, queries: OrderQueries, carts: CartCommands, after: timedelta, poll_seconds: float
    ) -> None:
        self.queries, self.carts, self.after, self.poll = queries, carts, after, poll_seconds

    async def tick(self) -> int:
        """Decide every cart the read model says is idle; return how many this call abandoned."""
        fired = 0
        for cart_id, now in await self.queries.idle_carts(self.after):
            fired += await self.carts.abandon(cart_id, now, self.after)
        if fired:
            log.info("carts.abandoned", count=fired)
        return fired

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``poll`` seconds until ``stop``. A failed tick ends this call; the role
        runs it supervised (shared/supervision.py), so it is logged and started again."""
        while not stop.is_set():
            await self.tick()
            await sleep_unless_stopped(stop, self.poll)
