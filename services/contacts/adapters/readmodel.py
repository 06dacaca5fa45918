"""The contacts read model (schema contacts_rm): one row per contact, built by ContactsProjection.

Batches are applied with set-based SQL: consecutive registrations become one INSERT from
unnest(), which is what makes a full rebuild fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from services.contacts.adapters.keys import DataKeys, unseal
from services.contacts.domain import contact as domain
from services.contacts.domain.identity import KINDS
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
    locale      text        NOT NULL DEFAULT '',
    time_zone   text        NOT NULL DEFAULT '',
    attributes  jsonb       NOT NULL DEFAULT '{}',
    archived    boolean     NOT NULL DEFAULT false,
    erased      boolean     NOT NULL DEFAULT false,
    merged_into uuid,
    -- The email as the mailbox provider sees it (gmail ignores dots and +tags): duplicates.
    email_canonical text GENERATED ALWAYS AS (
        CASE WHEN email = '' THEN ''
             WHEN split_part(email, '@', 2) IN ('gmail.com', 'googlemail.com')
             THEN replace(split_part(split_part(email, '@', 1), '+', 1), '.', '') || '@gmail.com'
             ELSE split_part(split_part(email, '@', 1), '+', 1) || '@' || split_part(email, '@', 2)
        END) STORED,
    version     bigint      NOT NULL,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL
);
CREATE INDEX contacts_email ON contacts (email) WHERE email <> '';
CREATE INDEX contacts_phone ON contacts (phone) WHERE phone <> '';
CREATE INDEX contacts_external_id ON contacts (external_id) WHERE external_id <> '';
CREATE INDEX contacts_tags ON contacts USING gin (tags);
CREATE INDEX contacts_email_canonical ON contacts (email_canonical) WHERE email_canonical <> '';
"""

_INSERT = """
INSERT INTO contacts (contact_id, email, phone, external_id, first_name, last_name, tags,
                      locale, time_zone, attributes, version, create_time, update_time)
SELECT r.id, r.email, r.phone, r.xid, r.fn, r.ln, r.tags::text[], r.loc, r.tz, r.attrs, r.v,
       r.at, r.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::jsonb[], $11::bigint[], $12::timestamptz[])
     AS r(id, email, phone, xid, fn, ln, tags, loc, tz, attrs, v, at)
ON CONFLICT (contact_id) DO NOTHING
"""

_FIELDS = domain.UPDATABLE  # the order of the flag/value pairs in _UPDATE below

# One UPDATE for every contact changed in a batch: per field, a flag says whether it changed.
_UPDATE = """
UPDATE contacts c SET
    email       = CASE WHEN u.m_email THEN u.email ELSE c.email END,
    phone       = CASE WHEN u.m_phone THEN u.phone ELSE c.phone END,
    external_id = CASE WHEN u.m_xid THEN u.xid ELSE c.external_id END,
    first_name  = CASE WHEN u.m_fn THEN u.fn ELSE c.first_name END,
    last_name   = CASE WHEN u.m_ln THEN u.ln ELSE c.last_name END,
    tags        = CASE WHEN u.m_tags THEN u.tags::text[] ELSE c.tags END,
    locale      = CASE WHEN u.m_loc THEN u.loc ELSE c.locale END,
    time_zone   = CASE WHEN u.m_tz THEN u.tz ELSE c.time_zone END,
    attributes  = CASE WHEN u.m_attrs THEN u.attrs::jsonb ELSE c.attributes END,
    version = u.v, update_time = u.at
FROM unnest($1::uuid[], $2::bool[], $3::text[], $4::bool[], $5::text[], $6::bool[], $7::text[],
            $8::bool[], $9::text[], $10::bool[], $11::text[], $12::bool[], $13::text[],
            $14::bool[], $15::text[], $16::bool[], $17::text[], $18::bool[], $19::text[],
            $20::bigint[], $21::timestamptz[])
     AS u(id, m_email, email, m_phone, phone, m_xid, xid, m_fn, fn, m_ln, ln, m_tags, tags,
          m_loc, loc, m_tz, tz, m_attrs, attrs, v, at)
WHERE c.contact_id = u.id AND c.version < u.v
"""


# Archive, restore and erase, last state per contact in the batch. ``archived`` is NULL when the
# batch neither archived nor restored the contact: the row's own value stands (an erasure in one
# batch must not undo an archive in an earlier one). Erasure blanks every personal column (the
# row stays: anonymous aggregates keep counting the contact).
_FLAGS = """
UPDATE contacts c SET
    archived = coalesce(f.archived, c.archived),
    erased = c.erased OR f.erased,
    email = CASE WHEN f.erased THEN '' ELSE c.email END,
    phone = CASE WHEN f.erased THEN '' ELSE c.phone END,
    external_id = CASE WHEN f.erased THEN '' ELSE c.external_id END,
    first_name = CASE WHEN f.erased THEN '' ELSE c.first_name END,
    last_name = CASE WHEN f.erased THEN '' ELSE c.last_name END,
    attributes = CASE WHEN f.erased THEN '{}'::jsonb ELSE c.attributes END,
    tags = CASE WHEN f.erased THEN '{}'::text[] ELSE c.tags END,
    version = greatest(c.version, f.v), update_time = greatest(c.update_time, f.at)
FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::bigint[], $5::timestamptz[])
     AS f(id, archived, erased, v, at)
WHERE c.contact_id = f.id
"""


_MERGE_FAMILY = {domain.MERGED, domain.ABSORBED, domain.UNMERGED, domain.ABSORPTION_REVERTED}


async def _apply_merge_event(conn: asyncpg.Connection, e: RecordedEvent) -> None:
    d = e.data
    fields = [
        f
        for f in d.get("moved_fields", [])
        + d.get("restored_fields", [])
        + d.get("cleared_fields", [])
        if f in KINDS  # identifiers below come from this fixed set only
    ]
    values = [
        "" if e.type in (domain.MERGED, domain.ABSORPTION_REVERTED) else d.get(f, "")
        for f in fields
    ]
    sets = [f"{f} = ${i + 3}" for i, f in enumerate(fields)]
    if e.type == domain.MERGED:
        sets.append(f"merged_into = ${len(fields) + 4}::uuid")
    elif e.type == domain.UNMERGED:
        sets.append("merged_into = NULL")
    extra = [d["survivor_id"]] if e.type == domain.MERGED else []
    await conn.execute(
        f"UPDATE contacts SET {', '.join([*sets, 'version = $2'])}, update_time = "
        f"${len(fields) + 3} WHERE contact_id = $1 AND version < $2",
        d["contact_id"],
        e.version,
        *values,
        e.recorded_at,
        *extra,
    )


class ContactsProjection:
    name = "contacts"
    schema = SCHEMA
    ddl = DDL
    categories: Sequence[str] | None = ["contact"]
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        keys = await DataKeys.get_many_on(conn, {e.data["contact_id"] for e in events})
        plain = [
            e._replace(data=unseal(keys.get(e.data["contact_id"]), e.data["contact_id"], e.data)[0])
            for e in events
        ]
        # Merges are rare and order-sensitive: apply the set-based path up to each one, then it.
        segment: list[RecordedEvent] = []
        for e in plain:
            if e.type in _MERGE_FAMILY:
                await self._apply_segment(conn, segment)
                segment = []
                await _apply_merge_event(conn, e)
            else:
                segment.append(e)
        await self._apply_segment(conn, segment)

    async def _apply_segment(self, conn: asyncpg.Connection, plain: list[RecordedEvent]) -> None:
        if not plain:
            return
        # A contact's registration precedes its updates, and nothing follows an erasure, so:
        # every registration of the batch, then each contact's merged updates, then the flags.
        await self._insert(conn, [e for e in plain if e.type == domain.REGISTERED])
        merged: dict[str, dict[str, Any]] = {}
        flags: dict[str, list[Any]] = {}
        for e in plain:
            cid = e.data["contact_id"]
            if e.type == domain.UPDATED:
                row = merged.setdefault(cid, {})
                for f in e.data.get("changed_fields", []):
                    row[f] = e.data.get(f, {"tags": [], "attributes": {}}.get(f, ""))
                row["version"], row["at"] = e.version, e.recorded_at
            elif e.type in (domain.ARCHIVED, domain.RESTORED, domain.ERASED):
                archived, erased, _, _ = flags.get(cid, [None, False, 0, None])
                if e.type == domain.ERASED:
                    erased = True
                else:
                    archived = e.type == domain.ARCHIVED
                flags[cid] = [archived, erased, e.version, e.recorded_at]
        if merged:
            await conn.execute(_UPDATE, *_update_columns(merged))
        if flags:
            cols = [list(flags), *([f[i] for f in flags.values()] for i in range(4))]
            await conn.execute(_FLAGS, *cols)

    @staticmethod
    async def _insert(conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        if not events:
            return
        cols: list[list[Any]] = [[] for _ in range(12)]
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
                    d.get("locale", ""),
                    d.get("time_zone", ""),
                    orjson.dumps(d.get("attributes", {})).decode(),
                    e.version,
                    e.recorded_at,
                ),
                strict=True,
            ):
                col.append(value)
        await conn.execute(_INSERT, *cols)


def _update_columns(merged: dict[str, dict[str, Any]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(21)]
    for contact_id, row in merged.items():
        values: list[Any] = [contact_id]
        for f in _FIELDS:
            if f == "tags":
                value = _pg_array(row.get(f))
            elif f == "attributes":
                value = orjson.dumps(row.get(f, {})).decode()
            else:
                value = row.get(f, "")
            values += [f in row, value]
        values += [row["version"], row["at"]]
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


def _pg_array(values: list[str] | None) -> str:
    """A PostgreSQL text[] literal: cheaper to cast per row than unpacking JSON in SQL."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values or ())
    return "{" + ",".join(quoted) + "}"
