"""The audit side of the PostgreSQL event store (audit/port.py): checkpoints in
eventstore.checkpoints (migrations/0003_checkpoints.sql), heads, exports and chain passes
streamed through server-side cursors, so nothing holds the log in memory.

Reading needs only SELECT on the eventstore schema: an auditor's read-only role can verify,
export and prove. Writing a checkpoint needs INSERT on eventstore.checkpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import asyncpg

from shared.eventstore.audit.chains import Head, StoredEvent
from shared.eventstore.audit.checkpoints import Checkpoint, SigningKey
from shared.eventstore.audit.port import LogBehindCheckpoint, build_checkpoint

_LOCK = 0x63726D5F636B7074  # "crm_ckpt": one checkpoint writer at a time
_PREFETCH = 5000
_COLUMNS = (
    "position, event_id, stream_id, version, type, data::text, metadata::text, recorded_at, hash"
)
# Only positions below this bound are final: every transaction with a smaller id has ended (see
# 0001_events.sql), so nothing can later commit at or below the last event under it.
_FINAL = """SELECT coalesce((SELECT position FROM eventstore.events
    WHERE position < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)
    ORDER BY position DESC LIMIT 1), 0)"""
# Each stream's head as of a position, by name in byte (code point) order whatever the
# database's collation: one pass over the events at or below it, sorted by PostgreSQL (spilling
# to disk past work_mem), read through a cursor.
_HEADS = """SELECT DISTINCT ON (stream_id COLLATE "C") stream_id, version, position, hash
    FROM eventstore.events WHERE position <= $1
    ORDER BY stream_id COLLATE "C", version DESC"""
_CHECKPOINT_COLUMNS = (
    "number, position, time, streams, root, previous, key_id, public_key, signature"
)

_LATEST = f"SELECT {_CHECKPOINT_COLUMNS} FROM eventstore.checkpoints ORDER BY number DESC LIMIT 1"


def _event(r: asyncpg.Record) -> StoredEvent:
    return StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bytes(r[8]))


def _checkpoint(r: asyncpg.Record) -> Checkpoint:
    from shared.domain.timestamps import timestamp_text

    return Checkpoint(
        number=r[0],
        position=r[1],
        time=timestamp_text(r[2]),
        streams=r[3],
        root=bytes(r[4]),
        previous=bytes(r[5]),
        key_id=r[6],
        public_key=bytes(r[7]),
        signature=bytes(r[8]),
    )


class PostgresAuditLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str) -> PostgresAuditLog:
        from shared.db import connect_pool

        return cls(await connect_pool(dsn, min_size=1, max_size=4))

    async def close(self) -> None:
        await self._pool.close()

    async def _stream(self, sql: str, *args: Any) -> AsyncGenerator[asyncpg.Record, None]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            async for r in conn.cursor(sql, *args, prefetch=_PREFETCH):
                yield r

    async def final_position(self) -> int:
        return int(await self._pool.fetchval(_FINAL))

    async def heads(self, as_of: int) -> AsyncGenerator[Head, None]:
        async for r in self._stream(_HEADS, as_of):
            yield Head(r[0], r[1], r[2], bytes(r[3]))

    async def events(self, first: int, last: int) -> AsyncGenerator[StoredEvent, None]:
        sql = (
            f"SELECT {_COLUMNS} FROM eventstore.events"
            " WHERE position >= $1 AND position <= $2 ORDER BY position"
        )
        async for r in self._stream(sql, first, last):
            yield _event(r)

    async def chains(self, stream: str | None = None) -> AsyncGenerator[StoredEvent, None]:
        where, args = ("WHERE stream_id = $1", [stream]) if stream is not None else ("", [])
        sql = f"SELECT {_COLUMNS} FROM eventstore.events {where} ORDER BY stream_id, version"
        async for r in self._stream(sql, *args):
            yield _event(r)

    async def stream_tail(
        self, stream: str, from_version: int, as_of: int
    ) -> AsyncGenerator[StoredEvent, None]:
        sql = (
            f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = $1 AND version >= $2"
            " AND position <= $3 ORDER BY version"
        )
        async for r in self._stream(sql, stream, from_version, as_of):
            yield _event(r)

    async def stored_event(self, event_id: uuid.UUID) -> StoredEvent | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM eventstore.events WHERE event_id = $1", event_id
        )
        return None if row is None else _event(row)

    async def event_at(self, position: int) -> StoredEvent | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM eventstore.events WHERE position = $1", position
        )
        return None if row is None else _event(row)

    async def positions_between(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[int, int]:
        final = await self.final_position()
        first = 0
        if since is not None:
            found = await self._pool.fetchval(
                "SELECT min(position) FROM eventstore.events WHERE recorded_at >= $1"
                " AND position <= $2",
                since,
                final,
            )
            first = final + 1 if found is None else int(found)
        last = final
        if until is not None:
            found = await self._pool.fetchval(
                "SELECT max(position) FROM eventstore.events WHERE recorded_at <= $1"
                " AND position <= $2",
                until,
                final,
            )
            last = 0 if found is None else int(found)
        return first, last

    async def create_checkpoint(self, key: SigningKey) -> Checkpoint | None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            row = await conn.fetchrow(_LATEST)
            previous = None if row is None else _checkpoint(row)
            final = int(await conn.fetchval(_FINAL))
            if previous is not None and final < previous.position:
                raise LogBehindCheckpoint(previous, final)
            if final == 0 or (previous is not None and final == previous.position):
                return None
            heads = (
                Head(r[0], r[1], r[2], bytes(r[3]))
                async for r in conn.cursor(_HEADS, final, prefetch=_PREFETCH)
            )
            at = await conn.fetchval("SELECT clock_timestamp()")
            checkpoint = await build_checkpoint(
                heads, key, previous=previous, position=final, at=at
            )
            await conn.execute(
                f"INSERT INTO eventstore.checkpoints ({_CHECKPOINT_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                checkpoint.number,
                checkpoint.position,
                checkpoint.at,
                checkpoint.streams,
                checkpoint.root,
                checkpoint.previous,
                checkpoint.key_id,
                checkpoint.public_key,
                checkpoint.signature,
            )
        return checkpoint

    async def latest_checkpoint(self) -> Checkpoint | None:
        row = await self._pool.fetchrow(_LATEST)
        return None if row is None else _checkpoint(row)

    async def checkpoints(self, after: int = 0, limit: int | None = None) -> list[Checkpoint]:
        rows = await self._pool.fetch(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM eventstore.checkpoints WHERE number > $1"
            " ORDER BY number LIMIT $2",
            after,
            limit,
        )
        return [_checkpoint(r) for r in rows]
