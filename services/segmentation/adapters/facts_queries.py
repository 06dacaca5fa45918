"""Reads of the engine's facts (segmentation_facts): one contact's facts for an explanation,
and every contact's facts for a dry run of a draft rule. Until the project role first ran,
the facts tables do not exist: no facts, no members."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from services.segmentation.adapters.facts_tables import load_facts
from services.segmentation.domain.facts import Facts

SCHEMA = "segmentation_facts"
CHUNK = 2000


class FactsQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL search_path TO {SCHEMA}, public")
            yield conn

    async def of(self, contact_id: str) -> Facts | None:
        try:
            async with self._reading() as conn:
                return (await load_facts(conn, [contact_id])).get(contact_id)
        except asyncpg.UndefinedTableError:
            return None

    async def members(self, key: str) -> set[str]:
        try:
            async with self._reading() as conn:
                rows = await conn.fetch(
                    "SELECT contact_id::text FROM memberships WHERE segment_key = $1", key
                )
        except asyncpg.UndefinedTableError:
            return set()
        return {r[0] for r in rows}

    async def everyone(self) -> AsyncIterator[list[Facts]]:
        """Every contact's facts, a chunk at a time, in one consistent snapshot."""
        async with self._reading() as conn:
            if await conn.fetchval("SELECT to_regclass('contacts')") is None:
                return
            after = uuid.UUID(int=0)
            while True:
                ids = await conn.fetch(
                    "SELECT contact_id FROM contacts WHERE contact_id > $1"
                    " ORDER BY contact_id LIMIT $2",
                    after,
                    CHUNK,
                )
                if not ids:
                    return
                facts = await load_facts(conn, [str(r[0]) for r in ids])
                yield list(facts.values())
                after = ids[-1][0]
