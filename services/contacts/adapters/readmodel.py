"""The contacts read model (schema contacts_rm): one row per contact, built by ContactsProjection.

Batches are applied with set-based SQL: consecutive registrations become one INSERT from
unnest(), which is what makes a full rebuild fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from services.contacts.domain import contact as domain
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

SCHEMA = "contacts_rm"

DDL = """
CREATE TABLE contacts (
    contact_id  uuid        PRIMARY KEY,
    email       text        NOT NULL DEFAULT '',
    phone       text        NOT NULL DEFAULT '',
    external_id text        NOT NULL DEFAULT '',
    first_name  text        NOT NULL DEFAULT '',
    last_name   text        NOT NULL DEFAULT '',
    tags        text[]      NOT NULL DEFAULT '{}',
    version     bigint      NOT NULL,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL
);
CREATE INDEX contacts_email ON contacts (email) WHERE email <> '';
CREATE INDEX contacts_phone ON contacts (phone) WHERE phone <> '';
CREATE INDEX contacts_external_id ON contacts (external_id) WHERE external_id <> '';
CREATE INDEX contacts_tags ON contacts USING gin (tags);
"""

_INSERT = """
INSERT INTO contacts (contact_id, email, phone, external_id, first_name, last_name, tags,
                      version, create_time, update_time)
SELECT r.id, r.email, r.phone, r.xid, r.fn, r.ln, r.tags::text[], r.v, r.at, r.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::bigint[], $9::timestamptz[]) AS r(id, email, phone, xid, fn, ln, tags, v, at)
ON CONFLICT (contact_id) DO NOTHING
"""

_FIELDS = ("email", "phone", "external_id", "first_name", "last_name", "tags")

# One UPDATE for every contact changed in a batch: per field, a flag says whether it changed.
_UPDATE = """
UPDATE contacts c SET
    email       = CASE WHEN u.m_email THEN u.email ELSE c.email END,
    phone       = CASE WHEN u.m_phone THEN u.phone ELSE c.phone END,
    external_id = CASE WHEN u.m_xid THEN u.xid ELSE c.external_id END,
    first_name  = CASE WHEN u.m_fn THEN u.fn ELSE c.first_name END,
    last_name   = CASE WHEN u.m_ln THEN u.ln ELSE c.last_name END,
    tags        = CASE WHEN u.m_tags THEN u.tags::text[] ELSE c.tags END,
    version = u.v, update_time = u.at
FROM unnest($1::uuid[], $2::bool[], $3::text[], $4::bool[], $5::text[], $6::bool[], $7::text[],
            $8::bool[], $9::text[], $10::bool[], $11::text[], $12::bool[], $13::text[],
            $14::bigint[], $15::timestamptz[])
     AS u(id, m_email, email, m_phone, phone, m_xid, xid, m_fn, fn, m_ln, ln, m_tags, tags, v, at)
WHERE c.contact_id = u.id AND c.version < u.v
"""


class ContactsProjection:
    name = "contacts"
    schema = SCHEMA
    ddl = DDL
    categories: Sequence[str] | None = ["contact"]
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        # A contact's registration precedes its updates in position order, so inserting every
        # registration of the batch first, then applying each contact's merged updates, is the
        # same as applying the events one by one.
        await self._insert(conn, [e for e in events if e.type == domain.REGISTERED])
        merged: dict[str, dict[str, Any]] = {}
        for e in events:
            if e.type == domain.UPDATED:
                row = merged.setdefault(e.data["contact_id"], {})
                for f in e.data.get("changed_fields", []):
                    row[f] = e.data.get(f, [] if f == "tags" else "")
                row["version"], row["at"] = e.version, e.recorded_at
        if merged:
            await conn.execute(_UPDATE, *_update_columns(merged))

    @staticmethod
    async def _insert(conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        if not events:
            return
        cols: list[list[Any]] = [[] for _ in range(9)]
        for e in events:
            d = e.data
            for col, value in zip(
                cols,
                (
                    d["contact_id"],
                    d.get("email", ""),
                    d.get("phone", ""),
                    d.get("external_id", ""),
                    d.get("first_name", ""),
                    d.get("last_name", ""),
                    _pg_array(d.get("tags")),
                    e.version,
                    e.recorded_at,
                ),
                strict=True,
            ):
                col.append(value)
        await conn.execute(_INSERT, *cols)


def _update_columns(merged: dict[str, dict[str, Any]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(15)]
    for contact_id, row in merged.items():
        values: list[Any] = [contact_id]
        for f in _FIELDS:
            values += [f in row, _pg_array(row.get(f)) if f == "tags" else row.get(f, "")]
        values += [row["version"], row["at"]]
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


def _pg_array(values: list[str] | None) -> str:
    """A PostgreSQL text[] literal: cheaper to cast per row than unpacking JSON in SQL."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values or ())
    return "{" + ",".join(quoted) + "}"
