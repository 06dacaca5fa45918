"""Queries over the contacts read model (contacts_rm). Never another service's tables."""

from __future__ import annotations

import builtins
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from services.contacts.domain.contact import Contact
from shared.domain import paging
from shared.domain.errors import Invalid

_COLS = """contact_id::text, email, phone, external_id, first_name, last_name, tags, version,
           create_time, update_time, locale, time_zone, attributes::text, archived, erased,
           coalesce(merged_into::text, '')"""
MAX_PAGE = 1000
DEFAULT_PAGE = 100


def _row(r: asyncpg.Record) -> Contact:
    return Contact(
        contact_id=r[0],
        email=r[1],
        phone=r[2],
        external_id=r[3],
        first_name=r[4],
        last_name=r[5],
        tags=tuple(r[6]),
        version=r[7],
        create_time=r[8],
        update_time=r[9],
        locale=r[10],
        time_zone=r[11],
        attributes=orjson.loads(r[12]),
        archived=r[13],
        erased=r[14],
        merged_into=r[15],
    )


@dataclass(frozen=True, slots=True)
class ListFilter:
    include_archived: bool = False
    tag: str = ""
    email: str = ""
    phone: str = ""
    external_id: str = ""

    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:12]


def encode_token(after: str, f: ListFilter) -> str:
    return paging.encode_token(after, f.fingerprint())


def decode_token(token: str, f: ListFilter) -> str:
    after = paging.decode_token(token, f.fingerprint())
    try:
        return str(uuid.UUID(str(after)))
    except ValueError:
        raise Invalid([("page_token", "INVALID_PAGE_TOKEN", "not a token from this API")]) from None


class ContactQueries:
    def __init__(self, pool: asyncpg.Pool, schema: str = "contacts_rm") -> None:
        self.pool = pool
        self.table = f"{schema}.contacts"

    async def get(self, contact_id: str) -> Contact | None:
        r = await self.pool.fetchrow(
            f"SELECT {_COLS} FROM {self.table} WHERE contact_id = $1", uuid.UUID(contact_id)
        )
        return _row(r) if r else None

    async def get_many(self, contact_ids: builtins.list[str]) -> dict[str, Contact]:
        """The read model rows of these contacts, by id, in one query (unknown ids left out)."""
        rows = await self.pool.fetch(
            f"SELECT {_COLS} FROM {self.table} WHERE contact_id = ANY($1::uuid[])",
            [uuid.UUID(c) for c in contact_ids],
        )
        return {r[0]: _row(r) for r in rows}

    async def find(self, kind: str, value: str) -> Contact | None:
        assert kind in ("email", "phone", "external_id")
        r = await self.pool.fetchrow(
            f"SELECT {_COLS} FROM {self.table} WHERE {kind} = $1 ORDER BY create_time LIMIT 1",
            value,
        )
        return _row(r) if r else None

    async def list(self, f: ListFilter, page_size: int, after: str | None) -> list[Contact]:
        where: list[str] = [
            "true" if f.include_archived else "NOT archived AND NOT erased AND merged_into IS NULL"
        ]
        args: list[Any] = []
        for col, value in (("email", f.email), ("phone", f.phone), ("external_id", f.external_id)):
            if value:
                args.append(value)
                where.append(f"{col} = ${len(args)}")
        if f.tag:
            args.append([f.tag])
            where.append(f"tags @> ${len(args)}::text[]")
        if after:
            args.append(uuid.UUID(after))
            where.append(f"contact_id > ${len(args)}")
        args.append(page_size)
        rows = await self.pool.fetch(
            f"SELECT {_COLS} FROM {self.table} WHERE {' AND '.join(where)}"
            f" ORDER BY contact_id LIMIT ${len(args)}",
            *args,
        )
        return [_row(r) for r in rows]

    async def duplicate_candidates(self, limit: int) -> builtins.list[tuple[str, str, str]]:
        active = "NOT {t}.erased AND {t}.merged_into IS NULL"
        rows = await self.pool.fetch(
            f"""(SELECT a.contact_id::text, b.contact_id::text, 'canonical_email'
                 FROM {self.table} a JOIN {self.table} b
                   ON a.email_canonical = b.email_canonical AND a.contact_id < b.contact_id
                 WHERE a.email_canonical <> ''
                   AND {active.format(t="a")} AND {active.format(t="b")})
                UNION ALL
                (SELECT a.contact_id::text, b.contact_id::text, 'name_and_email_domain'
                 FROM {self.table} a JOIN {self.table} b
                   ON lower(a.first_name) = lower(b.first_name)
                  AND lower(a.last_name) = lower(b.last_name)
                  AND split_part(a.email, '@', 2) = split_part(b.email, '@', 2)
                  AND a.email_canonical <> b.email_canonical AND a.contact_id < b.contact_id
                 WHERE a.first_name <> '' AND a.last_name <> '' AND a.email <> ''
                   AND {active.format(t="a")} AND {active.format(t="b")})
                LIMIT $1""",
            limit,
        )
        return [(r[0], r[1], r[2]) for r in rows]
