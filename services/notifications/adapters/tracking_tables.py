"""The tracked links of each message (migrations/0002_tracking.sql): written in a decision's
transaction (the event store's connection), read by the click endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.notifications.domain.links import Link

SCHEMA = "notifications_pipeline"


async def record_links(conn: asyncpg.Connection, links: Sequence[tuple[str, str, Link]]) -> None:
    """Inside the caller's transaction, as (message_id, contact_id, link); a decision is
    written once, so are its links."""
    if not links:
        return
    await conn.executemany(
        f"""INSERT INTO {SCHEMA}.links (message_id, link, contact_id, url) VALUES ($1, $2, $3, $4)
            ON CONFLICT (message_id, link) DO NOTHING""",
        [
            (
                uuid.UUID(message_id),
                link.index,
                uuid.UUID(contact_id) if contact_id else None,
                link.url,
            )
            for message_id, contact_id, link in links
        ],
    )


class PostgresLinks:
    """The click endpoint's read of a recorded link."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def url(self, message_id: str, index: int) -> str | None:
        found = await self.pool.fetchval(
            f"SELECT url FROM {SCHEMA}.links WHERE message_id = $1 AND link = $2",
            uuid.UUID(message_id),
            index,
        )
        return str(found) if found is not None else None
