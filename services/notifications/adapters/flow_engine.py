"""The flow engine: one projection (one leader across replicas) over the flows' own events,
contacts', orders' and segmentation's published events, and the runs' events.

Live, for each event of a contact (in log order, in the batch's transaction with the
checkpoint): every active flow it triggers starts a run (domain/flows/trigger.py, re-entry
against the contact's earlier runs there), and every open run of the contact sees it (an exit
event ends it; the event a wait step waits for takes its branch). The runs' events are
appended on the same connection, with ids derived from the upstream event (so a batch done
again writes nothing twice), with the run's row (where it waits: ``wake_at``) and the effects
to carry out (application/flow_effects.py). Times are the upstream event's: a delay counts from
the event that led to it.

In replay (a rebuild) nothing starts or advances: the flows, the time zones and the runs' rows
are folded from the log (the runs' own events are read only then), and no effect is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_batch import BatchView, Definitions
from services.notifications.application.message_stream import NS
from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows import flow as flows
from services.notifications.domain.flows import run as runs
from services.notifications.domain.flows import trigger
from services.notifications.domain.zones import zone_set
from shared.application.commands import new_events, new_id
from shared.events.upcast import upcast
from shared.eventstore import RecordedEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext
from shared.projections.reactor import Cause

RUN_TYPES = (runs.STARTED, runs.STEP, runs.WAITING, runs.ASKED, runs.ENDED)
CONTACTS = "crm.contacts.v1."
MEMBERSHIP = (
    "crm.segmentation.v1.ContactEnteredSegment",
    "crm.segmentation.v1.ContactExitedSegment",
)
UTC_ZONE = ZoneInfo("UTC")


def zone(name: str) -> tzinfo:
    """The contact's zone, UTC when it has none or an unknown one."""
    try:
        return ZoneInfo(name) if name else UTC_ZONE
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


@dataclass(frozen=True)
class RunWrite:
    """One run's walk to write: its row (None for a run just started), the walk's events and
    effects, and what answering a segment condition needs."""

    row: t.RunRow | None
    events: list[runs.Event]
    effects: list[runs.Effect]
    flow: fd.Flow
    tz: tzinfo
    request_id: str
    meta: Mapping[str, Any]
    now: datetime


class RunWriter:
    """Appends runs' events and keeps their rows and their effects, in the caller's
    transaction."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store

    async def write(
        self,
        conn: asyncpg.Connection,
        row: t.RunRow | None,
        walked: tuple[list[runs.Event], list[runs.Effect]],
        flow: fd.Flow,
        tz: tzinfo,
        request_id: str,
        meta: Mapping[str, Any],
        now: datetime,
    ) -> int:
        """The run's new events at the version its row holds; the position of the last."""
        write = RunWrite(row, walked[0], walked[1], flow, tz, request_id, meta, now)
        return await self.write_many(conn, [write])

    async def write_many(self, conn: asyncpg.Connection, writes: Sequence[RunWrite]) -> int:
        """Several distinct runs' new events, each at the version its row holds, in one append;
        their rows and their effects (in the order given) in one round trip each; the position
        of the last event. A segment condition a walk stopped at is answered from the
        memberships the engine holds as of this event, and the walk goes on (a rule condition
        waits for its effect)."""
        appends, rows, effects = [], [], []
        for w in writes:
            run = w.row.run if w.row is not None else runs.fold(w.events[:1])
            assert run is not None
            events, more = await self._answered(conn, run, w.flow, w.tz, w.now, w.events, w.effects)
            stream = runs.stream_of(run.run_id)
            expected = w.row.version if w.row is not None else StreamState.NO_STREAM
            new = new_events(NS, stream, list(events), w.request_id, w.meta)
            appends.append(StreamAppend(stream, new, expected))
            for type_, data in events if w.row is not None else events[1:]:
                run = runs.evolve(run, type_, data)
            key = w.row.trigger_key if w.row is not None else str(events[0][1]["trigger_key"])
            start = w.row.start_time if w.row is not None else w.now
            rows.append(t.RunRow(run, key, start, 0))
            effects.append((run, more))
        results = await self.store.append_batch_on(conn, appends)
        await t.save_runs(
            conn, [replace(r, version=a.version) for r, a in zip(rows, results, strict=True)]
        )
        await t.add_effects(conn, effects)
        return max(a.position for a in results)

    async def _answered(
        self,
        conn: asyncpg.Connection,
        run: runs.Run,
        flow: fd.Flow,
        tz: tzinfo,
        now: datetime,
        events: list[runs.Event],
        effects: list[runs.Effect],
    ) -> tuple[list[runs.Event], list[runs.Effect]]:
        for _ in range(runs.MAX_WALK):
            ask = effects[-1] if effects else None
            if not isinstance(ask, runs.Ask) or ask.test != "in_segment":
                break
            effects = effects[:-1]
            at = run
            for type_, data in events if events[0][0] != runs.STARTED else events[1:]:
                at = runs.evolve(at, type_, data)
            holds = await t.is_member(conn, ask.argument, run.contact_id)
            more, more_effects = runs.answered(at, flow, ask.step, holds, now, tz)
            events, effects = [*events, *more], [*effects, *more_effects]
        return events, effects


class FlowEngine:
    name = "notifications-flow-engine"
    schema = t.SCHEMA
    ddl = t.DDL
    categories: Sequence[str] | None = (
        "flow",
        "flowrun",
        "contact",
        "consent",
        "order",
        "cart",
        "segmentmembership",
    )
    types: Sequence[str] | None = None
    # Its own runs' events rebuild the runs' rows in a rebuild; live, they are written in the
    # transaction that decides them, and reading them back does nothing.
    replay_only_types = RUN_TYPES

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.definitions = Definitions()
        self.writer = RunWriter(store)

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        last = 0
        view = BatchView(conn, self.definitions, [] if ctx.replay else events)
        for e in events:
            if e.category == "flow":
                await t.save_flow_event(conn, e.type, e.data)
                view.flows_changed()
                if e.type == flows.ARCHIVED and not ctx.replay:
                    last = max(last, await self._archived(conn, e))
            elif e.type in RUN_TYPES:
                if ctx.replay:
                    await self._fold(conn, e)
            else:
                if e.type in MEMBERSHIP:
                    entered = e.type == MEMBERSHIP[0]
                    await t.set_member(conn, e.data["segment_key"], e.data["contact_id"], entered)
                if (zone_name := zone_set(e.type, e.data)) is not None:
                    await t.set_zone(conn, e.data["contact_id"], zone_name)
                    view.zone_set(e.data["contact_id"], zone_name)
                if not ctx.replay:
                    last = max(last, await self._react(conn, e, view))
        if last:
            ctx.after_commit.append(lambda: self.store.committed(last))

    async def _fold(self, conn: asyncpg.Connection, e: RecordedEvent) -> None:
        if e.type == runs.STARTED:
            run = runs.evolve(None, e.type, e.data)
            key = str(e.data.get("trigger_key") or run.contact_id)
            start = datetime.fromisoformat(e.data["start_time"])
            await t.save_run(conn, t.RunRow(run, key, start, e.version))
            return
        found = await conn.fetchrow("SELECT * FROM runs WHERE run_id = $1::uuid", e.data["run_id"])
        if found is not None:
            row = t.run_of(found)
            run = runs.evolve(row.run, e.type, e.data)
            await t.save_run(conn, t.RunRow(run, row.trigger_key, row.start_time, e.version))

    async def _archived(self, conn: asyncpg.Connection, e: RecordedEvent) -> int:
        """The flow's open runs end (FlowRunEnded "flow_archived")."""
        cause, last = Cause(e, self.name), 0
        for row in await t.open_runs_of_flow(conn, e.data["flow_id"]):
            flow = await self.definitions.get(conn, row.run.flow_id, row.run.flow_version)
            ended: tuple[list[runs.Event], list[runs.Effect]] = (runs.flow_archived(row.run), [])
            last = await self.writer.write(
                conn, row, ended, flow, UTC_ZONE, cause.request_id, cause.meta(), e.recorded_at
            )
        return last

    async def _react(self, conn: asyncpg.Connection, stored: RecordedEvent, view: BatchView) -> int:
        """Runs started and advanced by one upstream event; the last position appended. The
        event is read in its published form (upcast: field names as its proto says), which is
        what a flow's filters name."""
        e = upcast(stored)
        contact_id = str(e.data.get("contact_id", ""))
        if not contact_id:
            return 0
        states = await view.states()
        starting = []
        for flow_id, (state, version) in states.items():
            if state != flows.ACTIVE:
                continue
            flow = await self.definitions.get(conn, flow_id, version)
            start = trigger.starts(flow, e.type, str(e.event_id), e.data, e.metadata)
            if start is not None:
                starting.append((flow_id, version, flow, start))
        waiting = await view.open_runs(contact_id)
        if not starting and not waiting:
            return 0  # most events: nothing to start, nobody waiting
        cause = Cause(e, self.name)
        now, last = e.recorded_at, 0
        tz = zone(await view.zone(contact_id))
        started: set[str] = set()
        for flow_id, version, flow, start in starting:
            earlier = await t.earlier_runs(conn, flow_id, start.contact_id, start.trigger_key)
            if not runs.may_start(earlier, flow.re_entry, flow.re_entry_days, now):
                continue
            run_id = new_id(NS, "flowrun", f"{flow_id}:{e.event_id}")
            events, effects = runs.start(
                run_id,
                flow,
                flow_id,
                version,
                start.contact_id,
                start.trigger,
                now,
                tz,
                start.trigger_key,
            )
            last = await self.writer.write(
                conn, None, (events, effects), flow, tz, cause.request_id, cause.meta(), now
            )
            started.add(run_id)
            view.runs_changed(start.contact_id)
        for row in waiting:
            if row.run.run_id in started:
                continue
            flow = await self.definitions.get(conn, row.run.flow_id, row.run.flow_version)
            state = states.get(row.run.flow_id, (flows.ACTIVE, 0))[0]
            if state != flows.ACTIVE and not trigger.ends_runs(flow, e.type):
                continue  # a paused flow's runs take no step (they still end on exit events)
            events, effects = runs.event_seen(
                row.run, flow, e.type, e.data, str(e.event_id), now, tz
            )
            if events:
                last = await self.writer.write(
                    conn, row, (events, effects), flow, tz, cause.request_id, cause.meta(), now
                )
                view.runs_changed(contact_id)
        return last
