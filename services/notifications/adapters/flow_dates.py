"""Date triggers' state: ``notifications-flow-dates``, a projection (one leader across replicas)
over the flows' own events and contacts' published events, apart from the flow engine.

It keeps, in its schema (adapters/flow_date_tables.py): the flows with a date trigger; per
contact the dates of the attributes those triggers name (contacts' events seal attributes, so
they are read from contacts, BatchGetContactVersions, as of the event being processed: only the
attributes named, parsed to a date; an erasure deletes them); the contacts' time zones; and per
(flow, contact) the next fire, computed by domain/flows/dates.py strictly after the later of the
event's instant and the last fire. The date timer (adapters/flow_date_timer.py) fires them.

It starts nothing: runs are started by the timer only. A rebuild folds the same state, the
next fires computed after the rebuild's own instant (an occurrence passed meanwhile is not
caught up, and none fires twice: the run ids derive from the occurrence). A paused flow's
schedules are recomputed when it resumes (the occurrences passed while paused are skipped); an
archived flow's rows are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

import asyncpg

from services.notifications.adapters import flow_date_tables as t
from services.notifications.adapters.flow_engine import zone
from services.notifications.domain.flows import dates
from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows import flow as flows
from services.notifications.domain.zones import zone_set
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

CX = "crm.contacts.v1."
PROFILE = (CX + "ContactRegistered", CX + "ContactUpdated")
ERASED = CX + "ContactErased"


class ContactDates(Protocol):
    """Contacts as of given stream versions: the dates of the named attributes."""

    async def dates(
        self, refs: Sequence[tuple[str, int]], attributes: frozenset[str]
    ) -> dict[tuple[str, int], dict[str, date]]:
        """Per (contact, version) found, the named attributes that hold a date."""
        ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def attributes_changed(e: RecordedEvent) -> bool:
    """The event may have set the contact's attributes (read them as of its version)."""
    if e.type == PROFILE[0]:
        return bool(e.data.get("personal"))
    if e.type == PROFILE[1]:
        return "attributes" in e.data.get("changed_fields", ())
    return False


class FlowDates:
    name = "notifications-flow-dates"
    schema = t.SCHEMA
    ddl = t.DDL
    categories: Sequence[str] | None = ("flow", "contact")
    types: Sequence[str] | None = None

    def __init__(self, contacts: ContactDates, clock: Callable[[], datetime] = utcnow) -> None:
        self.contacts, self.clock = contacts, clock

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        floor = self.clock() if ctx.replay else None
        wanted = await t.wanted(conn)
        fetched_for, fetched = wanted, await self._fetch(events, wanted)
        scheduled = await t.date_flows(conn)  # read again only after a flow event of the batch
        for e in events:
            after = max(e.recorded_at, floor) if floor is not None else e.recorded_at
            if e.category == "flow":
                await self._flow(conn, e, after)
                wanted = await t.wanted(conn)
                scheduled = await t.date_flows(conn)
                continue
            cid = str(e.data.get("contact_id", ""))
            if not cid:
                continue
            if e.type == ERASED:
                await t.forget(conn, cid)
                continue
            touched = False
            if (name := zone_set(e.type, e.data)) is not None:
                await t.set_zone(conn, cid, name)
                touched = True
            if attributes_changed(e):
                await t.set_attributes_version(conn, cid, e.version)
            if attributes_changed(e) and wanted:
                if wanted == fetched_for:
                    found = fetched.get((cid, e.version))
                else:  # a flow of this batch named another attribute
                    found = await self._one(cid, e.version, wanted)
                for attribute in wanted:
                    await t.set_value(conn, cid, attribute, (found or {}).get(attribute))
                touched = True
            if touched and scheduled:  # no date flow: nothing to schedule
                await self._reschedule(conn, scheduled, cid, after)

    async def _fetch(
        self, events: Sequence[RecordedEvent], wanted: frozenset[str]
    ) -> dict[tuple[str, int], dict[str, date]]:
        """The batch's contacts as of their events, in one call (before a flow of this batch
        names a new attribute: such events are read one by one)."""
        refs = [(str(e.data["contact_id"]), e.version) for e in events if attributes_changed(e)]
        return await self.contacts.dates(refs, wanted) if refs and wanted else {}

    async def _one(self, cid: str, version: int, wanted: frozenset[str]) -> dict[str, date]:
        return (await self.contacts.dates([(cid, version)], wanted)).get((cid, version), {})

    async def _flow(self, conn: asyncpg.Connection, e: RecordedEvent, after: datetime) -> None:
        if e.type not in (
            flows.CREATED,
            flows.REVISED,
            flows.PAUSED,
            flows.RESUMED,
            flows.ARCHIVED,
        ):
            return
        fid = str(e.data["flow_id"])
        if e.type in (flows.CREATED, flows.REVISED):
            definition: Mapping[str, Any] = e.data["definition"]
            flow, problems = fd.read(definition)
            if not isinstance(flow.trigger, fd.DateTrigger) or problems:
                await t.drop_flow(conn, fid)
                await t.prune(conn)
                return
            before = await t.wanted(conn)
            await t.save_flow(conn, fid, int(e.data.get("version", 1)), definition)
            await t.prune(conn)
            if flow.trigger.attribute not in before:
                await self._learn(conn, flow.trigger.attribute)
        elif e.type == flows.ARCHIVED:
            await t.drop_flow(conn, fid)
            await t.prune(conn)
            return
        elif e.type in (flows.PAUSED, flows.RESUMED):
            state = flows.PAUSED_STATE if e.type == flows.PAUSED else flows.ACTIVE
            await t.set_state(conn, fid, state)
            if e.type == flows.PAUSED:
                return
        found = await t.date_flow(conn, fid)
        if found is None:
            return
        # the contacts with the date, and those scheduled before (a revision may name another
        # attribute: theirs is cleared)
        named = await t.contacts_with(conn, found.trigger.attribute)
        for cid in dict.fromkeys([*named, *await t.scheduled(conn, fid)]):
            await self._reschedule(conn, [found], cid, after)

    async def _learn(self, conn: asyncpg.Connection, attribute: str) -> None:
        """An attribute no flow named before: every contact's date, read from contacts as of the
        version that last set the contact's attributes (the same answer in a rebuild)."""
        refs = await t.attribute_versions(conn)
        found = await self.contacts.dates(refs, frozenset({attribute})) if refs else {}
        known = [
            (cid, found[(cid, v)][attribute])
            for cid, v in refs
            if attribute in found.get((cid, v), {})
        ]
        await t.add_values(conn, attribute, known)

    async def _reschedule(
        self, conn: asyncpg.Connection, those: Sequence[t.DateFlow], cid: str, after: datetime
    ) -> None:
        """The contact's next fire of each of these flows, strictly after ``after`` and its
        last fire."""
        values = await t.values_of(conn, cid)
        tz = zone((await t.zones_of(conn, [cid])).get(cid, ""))
        rows = []
        for f in those:
            last = await t.last_fired(conn, f.flow_id, cid)
            value = values.get(f.trigger.attribute)
            bound = max(after, last) if last is not None else after
            fire = dates.next_fire(value, f.trigger, tz, bound) if value is not None else None
            rows.append(
                t.Schedule(
                    f.flow_id,
                    cid,
                    fire.at if fire else None,
                    fire.day if fire else None,
                    last,
                )
            )
        await t.save_schedules(conn, rows)
