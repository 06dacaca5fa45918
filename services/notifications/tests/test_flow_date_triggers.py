"""Date triggers on a real store with contacts served for real: the flow-dates projection reads
a contact's birthday from contacts as of the event (the attribute is sealed in the event), the
date timer starts exactly one run at 09:00 local, never twice (a timer restarted, a stale
schedule), schedules next year's, fires nothing for a paused flow, and an erasure deletes the
kept date and every schedule of the contact."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.contacts.v1 import events_pb2 as cepb
from services.contacts import spec as contacts_spec
from services.notifications.adapters import flow_date_tables as dt
from services.notifications.adapters.contact_dates_client import GrpcContactDates
from services.notifications.adapters.flow_date_timer import DateTimer
from services.notifications.adapters.flow_dates import FlowDates
from services.notifications.application.flows import FlowCommands
from services.notifications.domain.flows import flow as flows
from services.notifications.domain.flows import run as runs
from services.notifications.tests.flow_env import Env as FlowEnv
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.client import bearer
from shared.projections.runner import ProjectionRunner
from shared.testing.postgres import DatabaseFactory
from shared.testing.service_env import serving
from shared.testing.tokens import SERVICE_TOKEN

PARIS = ZoneInfo("Europe/Paris")


@dataclass
class Dates:
    flows: FlowEnv
    contacts: cpb_grpc.ContactsServiceStub
    runner: ProjectionRunner

    @property
    def store(self) -> PostgresEventStore:
        return self.flows.store

    async def catch_up(self) -> None:
        await self.runner.catch_up()
        await self.flows.runner.catch_up()

    def timer(self, at: datetime) -> DateTimer:
        return DateTimer(self.store, clock=lambda: at)

    async def rows(self, table: str, contact_id: str) -> list[dict[str, Any]]:
        found = await self.store.pool.fetch(
            f"SELECT * FROM {dt.SCHEMA}.{table} WHERE contact_id = $1 ORDER BY 1",
            uuid.UUID(contact_id),
        )
        return [dict(r) for r in found]

    async def register(self, birthday: str, time_zone: str = "Europe/Paris") -> str:
        got = await self.contacts.RegisterContact(
            cpb.RegisterContactRequest(
                email=f"{uuid.uuid4().hex[:8]}@example.com",
                time_zone=time_zone,
                attributes={"birthday": cepb.AttributeValue(string_value=birthday)},
            )
        )
        await self.catch_up()
        return got.contact.contact_id


@pytest.fixture
async def dates(databases: DatabaseFactory) -> AsyncIterator[Dates]:
    dsn = await databases.create()
    store = await PostgresEventStore.connect(dsn, max_size=10)
    try:
        async with serving(contacts_spec.SPEC, dsn, store=store) as contacts:
            service = GrpcContactDates(
                cpb_grpc.ContactsServiceStub(contacts.channel), bearer(SERVICE_TOKEN)
            )
            runner = ProjectionRunner(store, FlowDates(service), retries=1, retry_delay=0)
            yield Dates(FlowEnv(store), cpb_grpc.ContactsServiceStub(contacts.channel), runner)
    finally:
        await store.close()
        await databases.drop(dsn)


def upcoming(days: int) -> date:
    """A day ``days`` from now that every year has (not Feb 29)."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return day + timedelta(days=1) if (day.month, day.day) == (2, 29) else day


def nine_paris(day: date) -> datetime:
    return datetime.combine(day, time(9, 0), tzinfo=PARIS).astimezone(UTC)


async def test_a_birthday_starts_one_run_at_nine_local_and_schedules_next_year(
    dates: Dates,
) -> None:
    flow_id = await dates.flows.flow("birthday")
    day = upcoming(10)
    born = day.replace(year=1990)
    cid = await dates.register(born.isoformat())

    # the date was read from contacts (sealed in the event); only the named attribute is kept
    assert [(r["attribute"], r["value"]) for r in await dates.rows("date_values", cid)] == [
        ("birthday", born)
    ]
    [schedule] = await dates.rows("date_schedule", cid)
    fire = nine_paris(day)
    assert (schedule["next_at"], schedule["day"], schedule["last_at"]) == (fire, day, None)

    assert await dates.timer(fire - timedelta(minutes=1)).tick() == 0  # not yet
    assert await dates.timer(fire).tick() == 1
    assert await dates.timer(fire + timedelta(hours=1)).tick() == 0  # a restarted timer: once
    [row] = await dates.flows.runs()
    assert (row.run.flow_id, row.run.contact_id, row.trigger_key) == (
        flow_id,
        cid,
        f"birthday:{day.year}",
    )
    assert (row.start_time, row.run.status, row.run.ended) == (fire, runs.DONE, runs.COMPLETED)
    assert row.run.trigger["year"] == day.year
    events = [e.data for e in await dates.flows.store.read_stream(runs.stream_of(row.run.run_id))]
    assert "date" not in row.run.trigger and born.isoformat() not in str(events)
    assert all(not str(e.get("trigger_key", "")).endswith(day.isoformat()[4:]) for e in events)
    assert await dates.flows.effects.tick() == 1
    [sent] = dates.flows.sent.requests
    assert (sent.template_key, sent.contact_id) == ("birthday-email", cid)

    [schedule] = await dates.rows("date_schedule", cid)
    next_year = day.replace(year=day.year + 1)
    assert (schedule["next_at"], schedule["day"], schedule["last_at"]) == (
        nine_paris(next_year),
        next_year,
        fire,
    )
    # a stale schedule (another replica's view, a crash before the schedule moved on) finds
    # the occurrence's run already there: nothing twice
    await dates.store.pool.execute(
        f"UPDATE {dt.SCHEMA}.date_schedule SET next_at = $1, day = $2", fire, day
    )
    assert await dates.timer(fire).tick() == 1
    assert len(await dates.flows.runs()) == 1
    assert await dates.flows.effects.tick() == 0 and len(dates.flows.sent.requests) == 1


async def test_a_changed_birthday_moves_the_fire(dates: Dates) -> None:
    await dates.flows.flow("birthday")
    cid = await dates.register(upcoming(10).replace(year=1990).isoformat())
    later = upcoming(20)
    changed = cpb.Contact(
        contact_id=cid,
        attributes={"birthday": cepb.AttributeValue(string_value=later.isoformat())},
    )
    mask = FieldMask(paths=["attributes.birthday"])
    await dates.contacts.UpdateContact(cpb.UpdateContactRequest(contact=changed, update_mask=mask))
    await dates.catch_up()
    [schedule] = await dates.rows("date_schedule", cid)
    assert (schedule["next_at"], schedule["day"]) == (nine_paris(later), later)
    # the attribute removed: no date, no fire
    removed = cpb.Contact(contact_id=cid)
    await dates.contacts.UpdateContact(cpb.UpdateContactRequest(contact=removed, update_mask=mask))
    await dates.catch_up()
    assert await dates.rows("date_values", cid) == []
    [schedule] = await dates.rows("date_schedule", cid)
    assert schedule["next_at"] is None


async def test_a_paused_flow_fires_nothing_and_an_erasure_forgets_the_date(dates: Dates) -> None:
    flow_id = await dates.flows.flow("birthday")
    day = upcoming(10)
    cid = await dates.register(day.replace(year=1990).isoformat())
    commands = FlowCommands(dates.store)
    await commands.change(flow_id, flows.decide_pause)
    await dates.catch_up()
    assert await dates.timer(nine_paris(day)).tick() == 0
    assert await dates.flows.runs() == []

    await commands.change(flow_id, flows.decide_resume)
    await dates.catch_up()
    [schedule] = await dates.rows("date_schedule", cid)
    assert schedule["next_at"] == nine_paris(day)  # resumed before the day: still this year's

    await dates.contacts.EraseContact(cpb.EraseContactRequest(contact_id=cid, reason="art. 17"))
    await dates.catch_up()
    for table in ("date_values", "date_contacts", "date_schedule"):
        assert await dates.rows(table, cid) == []
    assert await dates.timer(nine_paris(day)).tick() == 0
    assert await dates.flows.runs() == []


async def test_an_archived_flow_drops_its_schedules(dates: Dates) -> None:
    flow_id = await dates.flows.flow("birthday")
    cid = await dates.register(upcoming(10).replace(year=1990).isoformat())
    assert len(await dates.rows("date_schedule", cid)) == 1
    await FlowCommands(dates.store).change(flow_id, flows.decide_archive)
    await dates.catch_up()
    assert await dates.rows("date_schedule", cid) == []
    assert await dates.store.pool.fetchval(f"SELECT count(*) FROM {dt.SCHEMA}.date_flows") == 0


async def test_a_rebuild_folds_the_dates_and_starts_nothing(dates: Dates) -> None:
    await dates.flows.flow("birthday")
    day = upcoming(10)
    cid = await dates.register(day.replace(year=1990).isoformat())
    service = dates.runner.projection.contacts  # type: ignore[attr-defined]
    rebuilt = ProjectionRunner(
        dates.store, FlowDates(service), schema="flowdates_rebuilt", replay=True, name="rb"
    )
    await rebuilt.catch_up()
    rows = await dates.store.pool.fetch("SELECT * FROM flowdates_rebuilt.date_schedule")
    assert [(str(r["contact_id"]), r["next_at"]) for r in rows] == [(cid, nine_paris(day))]
    assert await dates.flows.runs() == []


async def test_a_flow_created_after_the_contact_reads_its_date_as_of_its_last_change(
    dates: Dates,
) -> None:
    day = upcoming(10)
    cid = await dates.register(day.replace(year=1990).isoformat())
    assert await dates.rows("date_values", cid) == []  # no flow names `birthday` yet
    await dates.flows.flow("birthday")
    await dates.catch_up()
    [schedule] = await dates.rows("date_schedule", cid)
    assert (schedule["next_at"], schedule["day"]) == (nine_paris(day), day)
    # the same in a rebuild: read as of the version that set the attributes, not as of now
    later = upcoming(20)
    changed = cpb.Contact(
        contact_id=cid,
        attributes={"birthday": cepb.AttributeValue(string_value=later.isoformat())},
    )
    mask = FieldMask(paths=["attributes.birthday"])
    await dates.contacts.UpdateContact(cpb.UpdateContactRequest(contact=changed, update_mask=mask))
    service = dates.runner.projection.contacts  # type: ignore[attr-defined]
    rebuilt = ProjectionRunner(
        dates.store, FlowDates(service), schema="flowdates_rebuilt", replay=True, name="rb"
    )
    await rebuilt.catch_up()
    rows = await dates.store.pool.fetch("SELECT * FROM flowdates_rebuilt.date_schedule")
    assert [(str(r["contact_id"]), r["day"]) for r in rows] == [(cid, later)]


async def test_an_archived_flow_s_attribute_is_no_longer_kept(dates: Dates) -> None:
    flow_id = await dates.flows.flow("birthday")
    cid = await dates.register(upcoming(10).replace(year=1990).isoformat())
    assert len(await dates.rows("date_values", cid)) == 1
    await FlowCommands(dates.store).change(flow_id, flows.decide_archive)
    await dates.catch_up()
    assert await dates.rows("date_values", cid) == []


async def test_a_revision_naming_another_attribute_moves_every_schedule(dates: Dates) -> None:
    flow_id = await dates.flows.flow("birthday")
    cid = await dates.register(upcoming(10).replace(year=1990).isoformat())
    commands = FlowCommands(dates.store)
    definition = dict((await commands.get(flow_id)).latest.definition)
    trigger = {"date": {**definition["trigger"]["date"], "attribute": "anniversary"}}
    await commands.update({**definition, "trigger": trigger})
    await dates.catch_up()
    [schedule] = await dates.rows("date_schedule", cid)
    assert schedule["next_at"] is None  # no `anniversary` for this contact
    assert await dates.rows("date_values", cid) == []  # `birthday` named by no flow: deleted
