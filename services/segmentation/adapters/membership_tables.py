"""The engine's writes of current memberships and timers, and the lock that serialises the
deciders of one contact (the engine and the timer worker): batched, one statement each way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from shared.db.columns import columns


async def lock_contacts(conn: asyncpg.Connection, contact_ids: Sequence[str]) -> None:
    """Serialise membership decisions of these contacts (the engine and the timers), taking
    the locks in one order so two deciders never wait for each other in a circle."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock(hashtext('segmentation:' || c))
           FROM (SELECT c FROM unnest($1::text[]) AS c ORDER BY c) AS ordered""",
        list(contact_ids),
    )


async def set_members(conn: asyncpg.Connection, changes: Sequence[tuple[str, str, bool]]) -> None:
    """(segment key, contact id, member?) into the current memberships, one statement each way."""
    entered = [(k, c) for k, c, member in changes if member]
    left = [(k, c) for k, c, member in changes if not member]
    if entered:
        await conn.execute(
            """INSERT INTO memberships (segment_key, contact_id)
               SELECT * FROM unnest($1::text[], $2::uuid[]) ON CONFLICT DO NOTHING""",
            *columns(entered, 2),
        )
    if left:
        await conn.execute(
            """DELETE FROM memberships m USING unnest($1::text[], $2::uuid[]) AS g (key, contact)
               WHERE m.segment_key = g.key AND m.contact_id = g.contact""",
            *columns(left, 2),
        )


async def write_timers(
    conn: asyncpg.Connection, timers: Sequence[tuple[str, str, datetime | None]]
) -> None:
    """(segment id, contact id, next flip or None) into the timers, one statement each way; a
    timer already due at that instant is left as it is."""
    due = [t for t in timers if t[2] is not None]
    gone = [(s, c) for s, c, at in timers if at is None]
    if gone:
        await conn.execute(
            """DELETE FROM timers t USING unnest($1::uuid[], $2::uuid[]) AS g (segment, contact)
               WHERE t.segment_id = g.segment AND t.contact_id = g.contact""",
            *columns(gone, 2),
        )
    if due:
        await conn.execute(
            """INSERT INTO timers (segment_id, contact_id, due_at)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])
               ON CONFLICT (segment_id, contact_id) DO UPDATE SET due_at = excluded.due_at
               WHERE timers.due_at IS DISTINCT FROM excluded.due_at""",
            *columns(due, 3),
        )
