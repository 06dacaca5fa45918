"""Flow runs' waits that end with no event: a delay's time, a wait's timeout. Timers are the
runs' rows (``wake_at``), so they survive restarts and cost no memory; the due ones are taken
``FOR UPDATE SKIP LOCKED`` and each run's events are appended at the version its row holds,
with ids derived from the run and its visit: a timer fires once however many replicas run
this. The walk's instant is the timer's (a delay after a delay counts from the first one's
end, not from when a busy worker got to it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_batch import Definitions
from services.notifications.adapters.flow_engine import RunWrite, RunWriter, zone
from services.notifications.domain.flows import run as runs
from shared.eventstore.postgres import PostgresEventStore
from shared.metrics import FLOW_TIMER_LATENESS
from shared.supervision import tick_until_stopped

BATCH = 200
ACTOR = "notifications-flow-timers"


def utcnow() -> datetime:
    return datetime.now(UTC)


class FlowTimers:
    def __init__(
        self,
        store: PostgresEventStore,
        definitions: Definitions,
        poll_seconds: float = 0.1,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store, self.definitions = store, definitions
        self.writer = RunWriter(store)
        self.poll, self.clock = poll_seconds, clock

    async def run(self, stop: asyncio.Event) -> None:
        await tick_until_stopped(stop, self.tick, BATCH, self.poll)

    async def tick(self) -> int:
        """Fire the timers due now, a batch in one transaction: the runs' events in one append,
        their rows and effects in one round trip each; how many were due."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {t.SCHEMA}, public")
            now = self.clock()
            rows = await t.due_runs(conn, now, BATCH)
            zones = await t.zones_of(conn, [row.run.contact_id for row in rows])
            writes, stale = [], []
            for row in rows:
                r = row.run
                assert r.wake_at is not None
                flow = await self.definitions.get(conn, r.flow_id, r.flow_version)
                tz = zone(zones.get(r.contact_id, ""))
                events, effects = runs.timer_due(r, flow, r.wake_at, tz)
                if not events:  # not waiting any more: a stale timer
                    stale.append(replace(row, run=r._replace(wake_at=None)))
                    continue
                key = f"{ACTOR}:{r.run_id}:{r.visits}"
                meta = {
                    "schema": 1,
                    "actor": ACTOR,
                    "request_id": key,
                    "causation_id": str(r.trigger.get("event_id", "")),
                    "correlation_id": str(r.trigger.get("event_id", "")),
                }
                writes.append(RunWrite(row, events, effects, flow, tz, key, meta, r.wake_at))
            await t.save_runs(conn, stale)
            last = await self.writer.write_many(conn, writes) if writes else 0
        for w in writes:
            assert w.row is not None and w.row.run.wake_at is not None
            FLOW_TIMER_LATENESS.observe(max(0.0, (now - w.row.run.wake_at).total_seconds()))
        if last:
            self.store.committed(last)
        return len(rows)
