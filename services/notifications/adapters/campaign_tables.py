"""The campaign engine's tables: the recipients (notifications_pipeline.campaign_recipients,
a migration's), the campaigns it looks at (the campaigns read model) and the contacts' zones
(the zones read model)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.notifications.adapters.campaigns_readmodel import SCHEMA, ZONES
from services.notifications.application.campaign_engine import HELD_OUT, Recipient
from shared.application.commands import Then

TABLE = "notifications_pipeline.campaign_recipients"


class PostgresZones:
    """The contacts' time zones (the zones read model)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def zones(self, contact_ids: Sequence[str]) -> dict[str, str]:
        rows = await self.pool.fetch(
            f"SELECT contact_id::text, time_zone FROM {ZONES}.zones WHERE contact_id = ANY($1)",
            [uuid.UUID(c) for c in contact_ids],
        )
        return {r[0]: r[1] for r in rows}


class PostgresRecipients(PostgresZones):
    async def open(self, now: datetime) -> list[str]:
        rows = await self.pool.fetch(
            f"""SELECT campaign_id::text FROM {SCHEMA}.campaigns
                 WHERE state = 'sending' OR (state = 'scheduled' AND start_at <= $1)
                UNION
                SELECT DISTINCT campaign_id::text FROM {TABLE} WHERE done_at IS NULL""",
            now,
        )
        return sorted(r[0] for r in rows)

    def writer(self, campaign_id: str, recipients: Sequence[Recipient]) -> Then:
        async def write(conn: Any) -> None:
            await conn.execute(
                f"""INSERT INTO {TABLE} (campaign_id, contact_id, variant, due_at)
                    SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::timestamptz[])
                    ON CONFLICT DO NOTHING""",
                uuid.UUID(campaign_id),
                [uuid.UUID(r.contact_id) for r in recipients],
                [r.variant for r in recipients],
                [r.due_at for r in recipients],
            )

        return write

    async def due(self, campaign_id: str, now: datetime, limit: int) -> list[Recipient]:
        rows = await self.pool.fetch(
            f"""SELECT contact_id::text, variant, due_at FROM {TABLE}
                WHERE campaign_id = $1 AND done_at IS NULL AND due_at <= $2
                ORDER BY due_at, contact_id LIMIT $3""",
            uuid.UUID(campaign_id),
            now,
            limit,
        )
        return [Recipient(r[0], r[1], r[2]) for r in rows]

    async def taken_since(self, campaign_id: str, since: datetime) -> int:
        return int(
            await self.pool.fetchval(
                f"""SELECT count(*) FROM {TABLE} WHERE campaign_id = $1 AND done_at > $2
                    AND outcome <> $3""",
                uuid.UUID(campaign_id),
                since,
                HELD_OUT,
            )
        )

    async def done(self, campaign_id: str, outcomes: Mapping[str, str], at: datetime) -> None:
        await self.pool.execute(
            f"""UPDATE {TABLE} t SET done_at = $2, outcome = o.outcome
                FROM unnest($3::uuid[], $4::text[]) AS o(contact_id, outcome)
                WHERE t.campaign_id = $1 AND t.contact_id = o.contact_id
                  AND t.done_at IS NULL""",
            uuid.UUID(campaign_id),
            at,
            [uuid.UUID(c) for c in outcomes],
            list(outcomes.values()),
        )

    async def later(self, campaign_id: str, contact_id: str, due_at: datetime) -> None:
        await self.pool.execute(
            f"UPDATE {TABLE} SET due_at = $3 WHERE campaign_id = $1 AND contact_id = $2",
            uuid.UUID(campaign_id),
            uuid.UUID(contact_id),
            due_at,
        )

    async def left(self, campaign_id: str) -> int:
        return int(
            await self.pool.fetchval(
                f"SELECT count(*) FROM {TABLE} WHERE campaign_id = $1 AND done_at IS NULL",
                uuid.UUID(campaign_id),
            )
        )

    async def drop(self, campaign_id: str, at: datetime) -> int:
        done = await self.pool.execute(
            f"""UPDATE {TABLE} SET done_at = $2, outcome = 'cancelled'
                WHERE campaign_id = $1 AND done_at IS NULL""",
            uuid.UUID(campaign_id),
            at,
        )
        return int(done.split()[-1])

    async def tally(self, campaign_id: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            f"SELECT outcome, count(*) FROM {TABLE} WHERE campaign_id = $1 GROUP BY outcome",
            uuid.UUID(campaign_id),
        )
        return {r[0]: int(r[1]) for r in rows if r[0]}
