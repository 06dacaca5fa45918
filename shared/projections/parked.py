"""Parked events (runner.py parks an event that keeps failing and moves on): listing them, and
what an operator does about one.

- Retry: apply the event again through its projection, live (a reactor reacts, an engine
  decides), in one transaction that holds the projection's checkpoint row, so it never
  interleaves with a batch of the live runner or a rebuild's switch. Success deletes the row;
  failure keeps it, with the new error and one more attempt.
- Skip: mark it resolved, with who and why; it stays listed (resolved) and no longer counts as
  parked.

Errors are domain errors with the Admin API's reasons (PARKED_EVENT_NOT_FOUND,
PARKED_EVENT_RESOLVED, PARKED_EVENT_STILL_FAILS); the gRPC layer maps them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.db.errors import transient
from shared.domain.errors import NotFound, Precondition, quote
from shared.events.upcast import upcast_all
from shared.eventstore import EventStore, RecordedEvent
from shared.projections.model import ApplyContext, Projection
from shared.projections.schema import quote_ident

COLUMNS = """name, position, event_id, stream_id, type, error, attempts, parked_at, resolved_at,
    resolved_by, resolution"""


@dataclass(frozen=True)
class Parked:
    name: str
    position: int
    event_id: uuid.UUID
    stream_id: str
    type: str
    error: str
    attempts: int
    parked_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


def _parked(row: asyncpg.Record) -> Parked:
    return Parked(**dict(row))


async def park(
    conn: asyncpg.Connection, name: str, event: RecordedEvent, error: str, attempts: int
) -> None:
    """Record that ``event`` failed ``attempts`` times with ``error`` (in the transaction that
    moves the runner's checkpoint past it)."""
    await conn.execute(
        """INSERT INTO projections.parked
             (name, position, event_id, stream_id, type, error, attempts)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        name,
        event.position,
        event.event_id,
        event.stream,
        event.type,
        error,
        attempts,
    )


async def list_parked(
    pool: asyncpg.Pool,
    names: Sequence[str],
    *,
    include_resolved: bool = False,
    after: tuple[str, int] | None = None,
    limit: int = 100,
) -> list[Parked]:
    """Parked events of the projections ``names``, by projection then position, after the
    (projection, position) ``after``."""
    after_name, after_position = after or ("", -1)
    rows = await pool.fetch(
        f"""SELECT {COLUMNS} FROM projections.parked
            WHERE name = ANY($1::text[]) AND ($2 OR resolved_at IS NULL)
              AND (name, position) > ($3, $4)
            ORDER BY name, position LIMIT $5""",
        list(names),
        include_resolved,
        after_name,
        after_position,
        limit,
    )
    return [_parked(r) for r in rows]


async def get_parked(
    pool: asyncpg.Pool | asyncpg.Connection, name: str, event_id: uuid.UUID
) -> Parked:
    row = await pool.fetchrow(
        f"SELECT {COLUMNS} FROM projections.parked WHERE name = $1 AND event_id = $2",
        name,
        event_id,
    )
    if row is None:
        raise _not_found(name, event_id)
    return _parked(row)


def _not_found(name: str, event_id: uuid.UUID) -> NotFound:
    return NotFound(
        "PARKED_EVENT_NOT_FOUND",
        f"{name} has no parked event {event_id}",
        projection=name,
        event_id=str(event_id),
    )


async def retry(
    pool: asyncpg.Pool, store: EventStore, projection: Projection, event_id: uuid.UUID
) -> Parked:
    """Apply the parked event again; on success delete its row and return it as it was."""
    stored = await store.get_event(event_id)
    if stored is None:
        raise _not_found(projection.name, event_id)
    (event,) = upcast_all([stored])
    ctx = ApplyContext(replay=False)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT position FROM projections.checkpoints WHERE name = $1 FOR UPDATE",
                projection.name,
            )
            row = await conn.fetchrow(
                f"""SELECT {COLUMNS} FROM projections.parked
                    WHERE name = $1 AND event_id = $2 FOR UPDATE""",
                projection.name,
                event_id,
            )
            if row is None:
                raise _not_found(projection.name, event_id)
            await conn.execute(f"SET LOCAL search_path TO {quote_ident(projection.schema)}, public")
            await projection.apply(conn, [event], ctx)
            await conn.execute(
                "DELETE FROM projections.parked WHERE name = $1 AND event_id = $2",
                projection.name,
                event_id,
            )
    except NotFound:
        raise
    except Exception as exc:
        if transient(exc):
            raise  # the database is away: nothing was decided about the event
        error = repr(exc)
        await pool.execute(
            """UPDATE projections.parked SET attempts = attempts + 1, error = $3
               WHERE name = $1 AND event_id = $2""",
            projection.name,
            event_id,
            error,
        )
        raise Precondition(
            "PARKED_EVENT_STILL_FAILS",
            f"{projection.name} still fails on event {event_id}: {quote(error, 200)}",
            projection=projection.name,
            event_id=str(event_id),
            error=error,
        ) from None
    for then in ctx.after_commit:
        then()
    return _parked(row)


async def skip(pool: asyncpg.Pool, name: str, event_id: uuid.UUID, who: str, why: str) -> Parked:
    """Resolve a parked event without applying it; return it, resolved."""
    row = await pool.fetchrow(
        f"""UPDATE projections.parked
            SET resolved_at = now(), resolved_by = $3, resolution = $4
            WHERE name = $1 AND event_id = $2 AND resolved_at IS NULL RETURNING {COLUMNS}""",
        name,
        event_id,
        who,
        why,
    )
    if row is not None:
        return _parked(row)
    parked = await get_parked(pool, name, event_id)  # not there at all: NOT_FOUND
    raise Precondition(
        "PARKED_EVENT_RESOLVED",
        f"event {event_id} of {name} was already skipped by {parked.resolved_by or 'someone'}",
        projection=name,
        event_id=str(event_id),
    )
