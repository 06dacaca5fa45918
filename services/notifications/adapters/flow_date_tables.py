"""The date triggers' tables (schema notifications_flowdates): the flows with a date trigger,
the contacts' dates those triggers name (only those attributes: nothing else personal is kept,
and an erasure deletes them), the contacts' time zones and the version of their stream that
last set their attributes (to read a newly named attribute as of it), and per (flow, contact)
the next fire (``next_at``, indexed: waiting birthdays are rows, not memory).

The tables are prefixed ``date_`` so that the date timer can read them beside the flow engine's
(notifications_flowruns) on one search path; the projection's functions use unqualified names
(the runner sets the search path to its schema, or a rebuild's)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson

from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows import flow as flows

SCHEMA = "notifications_flowdates"
DDL = """
CREATE TABLE date_flows (
    flow_id    uuid   PRIMARY KEY,
    version    bigint NOT NULL,
    state      text   NOT NULL,
    attribute  text   NOT NULL,
    definition jsonb  NOT NULL
);
CREATE TABLE date_values (
    contact_id uuid NOT NULL,
    attribute  text NOT NULL,
    value      date NOT NULL,
    PRIMARY KEY (contact_id, attribute)
);
CREATE TABLE date_contacts (
    contact_id         uuid   PRIMARY KEY,
    time_zone          text   NOT NULL DEFAULT '',
    attributes_version bigint  -- stream versions start at 0; NULL: none set yet
);
CREATE TABLE date_schedule (
    flow_id    uuid        NOT NULL,
    contact_id uuid        NOT NULL,
    next_at    timestamptz,
    day        date,
    last_at    timestamptz,
    PRIMARY KEY (flow_id, contact_id)
);
CREATE INDEX date_schedule_due ON date_schedule (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX date_schedule_contact ON date_schedule (contact_id);
"""


@dataclass(frozen=True)
class DateFlow:
    flow_id: str
    version: int
    state: str
    flow: fd.Flow

    @property
    def trigger(self) -> fd.DateTrigger:
        assert isinstance(self.flow.trigger, fd.DateTrigger)
        return self.flow.trigger


def _flow_of(r: asyncpg.Record) -> DateFlow:
    flow = fd.read(orjson.loads(r["definition"]))[0]
    return DateFlow(str(r["flow_id"]), r["version"], r["state"], flow)


async def date_flows(conn: asyncpg.Connection, attribute: str | None = None) -> list[DateFlow]:
    """The flows with a date trigger (on ``attribute`` when given), archived ones excluded."""
    rows = await conn.fetch(
        "SELECT * FROM date_flows WHERE $1::text IS NULL OR attribute = $1 ORDER BY flow_id",
        attribute,
    )
    return [_flow_of(r) for r in rows]


async def date_flow(conn: asyncpg.Connection, flow_id: str) -> DateFlow | None:
    r = await conn.fetchrow("SELECT * FROM date_flows WHERE flow_id = $1", uuid.UUID(flow_id))
    return _flow_of(r) if r is not None else None


async def wanted(conn: asyncpg.Connection) -> frozenset[str]:
    """The attributes some flow's date trigger names: the only ones kept."""
    return frozenset(r[0] for r in await conn.fetch("SELECT DISTINCT attribute FROM date_flows"))


async def save_flow(
    conn: asyncpg.Connection, flow_id: str, version: int, d: Mapping[str, Any]
) -> None:
    """A flow version with a date trigger (its state kept when it exists)."""
    attribute = d["trigger"]["date"]["attribute"]
    await conn.execute(
        """INSERT INTO date_flows (flow_id, version, state, attribute, definition)
            VALUES ($1, $2, $3, $4, $5::jsonb)
            ON CONFLICT (flow_id) DO UPDATE
            SET version = $2, attribute = $4, definition = $5::jsonb""",
        uuid.UUID(flow_id),
        version,
        flows.ACTIVE,
        attribute,
        orjson.dumps(dict(d)).decode(),
    )


async def set_state(conn: asyncpg.Connection, flow_id: str, state: str) -> None:
    await conn.execute(
        "UPDATE date_flows SET state = $2 WHERE flow_id = $1", uuid.UUID(flow_id), state
    )


async def drop_flow(conn: asyncpg.Connection, flow_id: str) -> None:
    """The flow fires no more (archived, or revised without a date trigger): its rows go."""
    fid = uuid.UUID(flow_id)
    await conn.execute("DELETE FROM date_schedule WHERE flow_id = $1", fid)
    await conn.execute("DELETE FROM date_flows WHERE flow_id = $1", fid)


async def set_value(
    conn: asyncpg.Connection, contact_id: str, attribute: str, value: date | None
) -> None:
    if value is None:
        await conn.execute(
            "DELETE FROM date_values WHERE contact_id = $1 AND attribute = $2",
            uuid.UUID(contact_id),
            attribute,
        )
        return
    await conn.execute(
        """INSERT INTO date_values (contact_id, attribute, value) VALUES ($1, $2, $3)
            ON CONFLICT (contact_id, attribute) DO UPDATE SET value = $3""",
        uuid.UUID(contact_id),
        attribute,
        value,
    )


async def add_values(
    conn: asyncpg.Connection, attribute: str, values: Sequence[tuple[str, date]]
) -> None:
    """Many contacts' dates of one attribute, in one round trip."""
    if values:
        await conn.executemany(
            """INSERT INTO date_values (contact_id, attribute, value) VALUES ($1, $2, $3)
                ON CONFLICT (contact_id, attribute) DO UPDATE SET value = $3""",
            [(uuid.UUID(cid), attribute, value) for cid, value in values],
        )


async def values_of(conn: asyncpg.Connection, contact_id: str) -> dict[str, date]:
    rows = await conn.fetch(
        "SELECT attribute, value FROM date_values WHERE contact_id = $1", uuid.UUID(contact_id)
    )
    return {r[0]: r[1] for r in rows}


async def contacts_with(conn: asyncpg.Connection, attribute: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT contact_id::text FROM date_values WHERE attribute = $1 ORDER BY contact_id",
        attribute,
    )
    return [r[0] for r in rows]


async def scheduled(conn: asyncpg.Connection, flow_id: str) -> list[str]:
    """The contacts with a next fire of the flow."""
    rows = await conn.fetch(
        """SELECT contact_id::text FROM date_schedule
            WHERE flow_id = $1 AND next_at IS NOT NULL ORDER BY contact_id""",
        uuid.UUID(flow_id),
    )
    return [r[0] for r in rows]


async def set_zone(conn: asyncpg.Connection, contact_id: str, time_zone: str) -> None:
    await conn.execute(
        """INSERT INTO date_contacts (contact_id, time_zone) VALUES ($1, $2)
            ON CONFLICT (contact_id) DO UPDATE SET time_zone = $2""",
        uuid.UUID(contact_id),
        time_zone,
    )


async def set_attributes_version(conn: asyncpg.Connection, contact_id: str, version: int) -> None:
    await conn.execute(
        """INSERT INTO date_contacts (contact_id, attributes_version) VALUES ($1, $2)
            ON CONFLICT (contact_id) DO UPDATE SET attributes_version = $2""",
        uuid.UUID(contact_id),
        version,
    )


async def attribute_versions(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    """Each contact with attributes, and the version of its stream that last set them."""
    rows = await conn.fetch(
        """SELECT contact_id::text, attributes_version FROM date_contacts
            WHERE attributes_version IS NOT NULL ORDER BY contact_id"""
    )
    return [(r[0], r[1]) for r in rows]


async def prune(conn: asyncpg.Connection) -> None:
    """Dates of attributes no flow names any more are deleted."""
    await conn.execute(
        "DELETE FROM date_values WHERE attribute NOT IN (SELECT attribute FROM date_flows)"
    )


async def zones_of(conn: asyncpg.Connection, contact_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT contact_id::text, time_zone FROM date_contacts WHERE contact_id = ANY($1::uuid[])",
        list({uuid.UUID(c) for c in contact_ids}),
    )
    return {r[0]: r[1] for r in rows}


async def forget(conn: asyncpg.Connection, contact_id: str) -> None:
    """An erased contact: its dates, zone and schedules are deleted."""
    cid = uuid.UUID(contact_id)
    for table in ("date_values", "date_contacts", "date_schedule"):
        await conn.execute(f"DELETE FROM {table} WHERE contact_id = $1", cid)


async def last_fired(conn: asyncpg.Connection, flow_id: str, contact_id: str) -> datetime | None:
    """The last fire of the flow for the contact, its schedule locked for this transaction."""
    value = await conn.fetchval(
        "SELECT last_at FROM date_schedule WHERE flow_id = $1 AND contact_id = $2 FOR UPDATE",
        uuid.UUID(flow_id),
        uuid.UUID(contact_id),
    )
    return value


_SCHEDULE = """INSERT INTO date_schedule (flow_id, contact_id, next_at, day, last_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (flow_id, contact_id) DO UPDATE SET next_at = $3, day = $4, last_at = $5"""


@dataclass(frozen=True)
class Schedule:
    flow_id: str
    contact_id: str
    next_at: datetime | None
    day: date | None
    last_at: datetime | None


async def save_schedules(conn: asyncpg.Connection, rows: Sequence[Schedule]) -> None:
    if rows:
        await conn.executemany(
            _SCHEDULE,
            [
                (uuid.UUID(s.flow_id), uuid.UUID(s.contact_id), s.next_at, s.day, s.last_at)
                for s in rows
            ],
        )


async def due(conn: asyncpg.Connection, schema: str, now: datetime, limit: int) -> list[Schedule]:
    """Due fires of active flows, locked for this transaction (other replicas skip them)."""
    rows = await conn.fetch(
        f"""SELECT s.* FROM {schema}.date_schedule s
            JOIN {schema}.date_flows f ON f.flow_id = s.flow_id AND f.state = $3
            WHERE s.next_at <= $1 ORDER BY s.next_at LIMIT $2
            FOR UPDATE OF s SKIP LOCKED""",
        now,
        limit,
        flows.ACTIVE,
    )
    return [
        Schedule(str(r["flow_id"]), str(r["contact_id"]), r["next_at"], r["day"], r["last_at"])
        for r in rows
    ]
