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
SELECT r.id, r.email, r.phone, r.xid, r.fn, r.ln,
       coalesce((SELECT array_agg(t) FROM jsonb_array_elements_text(r.tags) t), '{}'),
       r.v, r.at, r.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
            $8::bigint[], $9::timestamptz[]) AS r(id, email, phone, xid, fn, ln, tags, v, at)
ON CONFLICT (contact_id) DO NOTHING
"""

_UPDATE = """
UPDATE contacts SET
    email       = CASE WHEN 'email' = ANY($2::text[]) THEN $3 ELSE email END,
    phone       = CASE WHEN 'phone' = ANY($2::text[]) THEN $4 ELSE phone END,
    external_id = CASE WHEN 'external_id' = ANY($2::text[]) THEN $5 ELSE external_id END,
    first_name  = CASE WHEN 'first_name' = ANY($2::text[]) THEN $6 ELSE first_name END,
    last_name   = CASE WHEN 'last_name' = ANY($2::text[]) THEN $7 ELSE last_name END,
    tags        = CASE WHEN 'tags' = ANY($2::text[]) THEN $8::text[] ELSE tags END,
    version = $9, update_time = $10
WHERE contact_id = $1 AND version < $9
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
        pending: list[RecordedEvent] = []
        for e in events:
            if e.type == domain.REGISTERED:
                pending.append(e)
                continue
            await self._insert(conn, pending)
            pending = []
            if e.type == domain.UPDATED:
                d = e.data
                await conn.execute(
                    _UPDATE,
                    d["contact_id"],
                    d.get("changed_fields", []),
                    d.get("email", ""),
                    d.get("phone", ""),
                    d.get("external_id", ""),
                    d.get("first_name", ""),
                    d.get("last_name", ""),
                    d.get("tags", []),
                    e.version,
                    e.recorded_at,
                )
        await self._insert(conn, pending)

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
                    _json_list(d.get("tags")),
                    e.version,
                    e.recorded_at,
                ),
                strict=True,
            ):
                col.append(value)
        await conn.execute(_INSERT, *cols)


def _json_list(tags: list[str] | None) -> str:
    import orjson

    return orjson.dumps(tags or []).decode()
