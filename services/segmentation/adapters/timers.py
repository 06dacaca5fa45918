"""Relative-time conditions flip with no event: the engine records, per (segment, contact),
the next instant a rule's answer may change; this worker fires those timers when they are due
and decides membership again at that exact instant (cause TIME_PASSED, effective_time = the
instant). Timers live in the database, so they survive restarts; rows are taken with
``FOR UPDATE SKIP LOCKED`` and the events' ids derive from (segment, instant), so a timer fires
once however many replicas run this worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from services.segmentation.adapters.engine import Ask, MembershipEngine, utcnow
from services.segmentation.adapters.membership_tables import write_timers
from services.segmentation.application import membership as m
from services.segmentation.domain.rules import FactGroup
from shared.eventstore.postgres import PostgresEventStore
from shared.supervision import tick_until_stopped

BATCH = 200


class MembershipTimers:
    def __init__(
        self,
        store: PostgresEventStore,
        engine: MembershipEngine,
        poll_seconds: float = 0.2,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store, self.engine, self.poll, self.clock = store, engine, poll_seconds, clock

    async def run(self, stop: asyncio.Event) -> None:
        await tick_until_stopped(stop, self.tick, BATCH, self.poll)

    async def tick(self) -> int:
        """Fire the timers due now; how many fired."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL search_path TO segmentation_facts, public")
            rows = await conn.fetch(
                """SELECT segment_id::text, contact_id::text, due_at FROM timers
                   WHERE due_at <= $1 ORDER BY contact_id, due_at LIMIT $2
                   FOR UPDATE SKIP LOCKED""",
                self.clock(),
                BATCH,
            )
            active = {s.segment_id for s in await self.engine.active(conn)}
            await write_timers(conn, [(sid, cid, None) for sid, cid, _ in rows])
            asks = [
                Ask(
                    cid, {FactGroup.TIME}, m.TIME_PASSED, None, due, f"{sid}@{due.isoformat()}", due
                )
                for sid, cid, due in rows
                if sid in active  # else archived meanwhile
            ]
            appends = await self.engine.evaluate(conn, asks)
            last = 0
            if appends:
                results = await self.store.append_batch_on(conn, appends)
                last = max(r.position for r in results)
        if last:
            self.store.committed(last)
        return len(rows)
