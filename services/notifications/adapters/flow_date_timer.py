"""Date triggers fired: ``notifications-flow-date-timer`` (project role, one leader; ``FOR UPDATE
SKIP LOCKED`` besides) takes the (flow, contact) pairs whose next fire has come
(notifications_flowdates.date_schedule, kept by adapters/flow_dates.py) and, a batch in one
transaction:

- starts a run of the flow for the contact at the fire's instant, the trigger key
  ``<attribute>:<year>`` (the anniversary's year: one run per occurrence, and no day or month
  of a birthday in the log's clear events; the flow's re-entry policy still applies
  against earlier runs with that key), the run id and its events' ids derived from the flow, the
  contact and the occurrence, so that an occurrence starts one run across replicas and restarts
  (a run already there is not started again);
- records the fire and the next one (domain/flows/dates.py, strictly after this fire).

The runs are written as the flow engine writes them (RunWriter: the runs' events, their rows in
notifications_flowruns, their effects), so the engine and its timers carry them on. The run's
trigger data is the attribute's name and the anniversary's year, never the attribute's value
or its day (a template shows the date from the contact's profile, read at send time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.notifications.adapters import flow_date_tables as dt
from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_engine import RunWrite, RunWriter, zone
from services.notifications.application.message_stream import NS
from services.notifications.domain.flows import dates
from services.notifications.domain.flows import run as runs
from shared.application.commands import new_id
from shared.eventstore.postgres import PostgresEventStore
from shared.supervision import tick_until_stopped

BATCH = 200
ACTOR = "notifications-flow-date-timer"
DATE_EVENT = "date"  # the trigger data's event_type: a date, not an event of the log


def utcnow() -> datetime:
    return datetime.now(UTC)


class DateTimer:
    def __init__(
        self,
        store: PostgresEventStore,
        poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.writer = RunWriter(store)
        self.poll, self.clock = poll_seconds, clock

    async def run(self, stop: asyncio.Event) -> None:
        await tick_until_stopped(stop, self.tick, BATCH, self.poll)

    async def tick(self) -> int:
        """Fire the occurrences due now, a batch in one transaction; how many were due."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {t.SCHEMA}, {dt.SCHEMA}, public")
            due = await dt.due(conn, dt.SCHEMA, self.clock(), BATCH)
            zones = await dt.zones_of(conn, [s.contact_id for s in due])
            found: dict[str, dt.DateFlow | None] = {}
            writes, schedules = [], []
            for s in due:
                if s.flow_id not in found:
                    found[s.flow_id] = await dt.date_flow(conn, s.flow_id)
                f = found[s.flow_id]
                assert f is not None and s.next_at is not None and s.day is not None
                tz = zone(zones.get(s.contact_id, ""))
                write = await self._start(conn, f, s, tz)
                if write is not None:
                    writes.append(write)
                value = (await dt.values_of(conn, s.contact_id)).get(f.trigger.attribute)
                fire = dates.next_fire(value, f.trigger, tz, s.next_at) if value else None
                schedules.append(
                    dt.Schedule(
                        s.flow_id,
                        s.contact_id,
                        fire.at if fire else None,
                        fire.day if fire else None,
                        s.next_at,
                    )
                )
            await dt.save_schedules(conn, schedules)
            last = await self.writer.write_many(conn, writes) if writes else 0
        if last:
            self.store.committed(last)
        return len(due)

    async def _start(
        self, conn: asyncpg.Connection, f: dt.DateFlow, s: dt.Schedule, tz: Any
    ) -> RunWrite | None:
        """The run this occurrence starts, or None (started already; re-entry refuses)."""
        assert s.day is not None and s.next_at is not None
        key = dates.trigger_key(f.trigger.attribute, s.day, f.trigger.offset_days)
        occurrence = f"{f.flow_id}:{s.contact_id}:{key}"
        run_id = new_id(NS, "flowrun", occurrence)
        if await conn.fetchval("SELECT true FROM runs WHERE run_id = $1::uuid", run_id):
            return None
        earlier = await t.earlier_runs(conn, f.flow_id, s.contact_id, key)
        if not runs.may_start(earlier, f.flow.re_entry, f.flow.re_entry_days, s.next_at):
            return None
        event_id = new_id(NS, "flowdate", occurrence)
        trigger = {
            "event_type": DATE_EVENT,
            "event_id": event_id,
            "attribute": f.trigger.attribute,
            "year": dates.occurrence_year(s.day, f.trigger.offset_days),
        }
        walked = runs.start(
            run_id, f.flow, f.flow_id, f.version, s.contact_id, trigger, s.next_at, tz, key
        )
        request_id = f"{ACTOR}:{occurrence}"
        meta = {
            "schema": 1,
            "actor": ACTOR,
            "request_id": request_id,
            "causation_id": event_id,
            "correlation_id": event_id,
        }
        return RunWrite(None, walked[0], walked[1], f.flow, tz, request_id, meta, s.next_at)
