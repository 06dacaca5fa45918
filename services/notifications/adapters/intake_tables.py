"""The intake's tables on PostgreSQL (migrations/0003_intake.sql), written in the event store's
transaction with the event they go with: the SMS gateway's ids (with MessageSent) and the soft
bounces counted per contact and channel (with MessageBounced, the contact locked so that two
concurrent bounces count each other)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from shared.eventstore import EventStore, StreamAppend

SCHEMA = "notifications_intake"


def _uuid(value: str) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


async def remember_provider_id(
    conn: asyncpg.Connection, provider_id: str, message_id: str, contact_id: str
) -> None:
    """The gateway's id of a message it accepted (in MessageSent's transaction)."""
    await conn.execute(
        f"""INSERT INTO {SCHEMA}.provider_ids VALUES ($1, $2, $3)
            ON CONFLICT (provider_id) DO NOTHING""",
        provider_id,
        uuid.UUID(message_id),
        _uuid(contact_id),
    )


class PostgresRecording:
    """One report's transaction (application/intake.py, ``Recording``)."""

    def __init__(self, uow: object, conn: asyncpg.Connection) -> None:
        self.uow, self.conn = uow, conn

    async def soft_bounces(self, contact_id: str, channel: str, other_than: str) -> list[datetime]:
        rows = await self.conn.fetch(
            f"""SELECT bounced_at FROM {SCHEMA}.soft_bounces
                WHERE contact_id = $1 AND channel = $2 AND message_id <> $3""",
            uuid.UUID(contact_id),
            channel,
            uuid.UUID(other_than),
        )
        return [r["bounced_at"] for r in rows]

    async def count_soft_bounce(
        self, contact_id: str, channel: str, message_id: str, at: datetime
    ) -> None:
        await self.conn.execute(
            f"""INSERT INTO {SCHEMA}.soft_bounces VALUES ($1, $2, $3, $4)
                ON CONFLICT DO NOTHING""",
            uuid.UUID(contact_id),
            channel,
            uuid.UUID(message_id),
            at,
        )

    async def append(self, appends: Sequence[StreamAppend]) -> None:
        await self.uow.append_multi(list(appends))  # type: ignore[attr-defined]


class PostgresIntakeTables:
    def __init__(self, store: EventStore, pool: asyncpg.Pool) -> None:
        self.store, self.pool = store, pool

    @asynccontextmanager
    async def recording(self, contact_id: str) -> AsyncIterator[PostgresRecording]:
        async with self.store.transaction() as uow:
            conn = uow.connection
            if conn is None:
                raise RuntimeError("the intake needs the PostgreSQL event store")
            if contact_id:  # the same lock as a decision's: one writer per contact at a time
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('notifications-contact:' || $1))",
                    contact_id,
                )
            yield PostgresRecording(uow, conn)

    async def message_of(self, provider_id: str) -> str | None:
        found = await self.pool.fetchval(
            f"SELECT message_id FROM {SCHEMA}.provider_ids WHERE provider_id = $1", provider_id
        )
        return str(found) if found is not None else None
