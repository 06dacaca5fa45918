"""The flow effects outbox (notifications_pipeline.flow_effects, a migration's table) as the
one effects worker reads and updates it (application/flow_effects.py)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson

from services.notifications.adapters.flow_run_tables import EFFECTS
from services.notifications.application.flow_effects import DueEffect


class PostgresEffects:
    """The effects outbox, for the one worker that carries them out (application/
    flow_effects.py)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def due(self, now: datetime, limit: int) -> list[DueEffect]:
        rows = await self.pool.fetch(
            f"""SELECT id, request_id, effect, attempts FROM {EFFECTS}
                WHERE error = '' AND due_at <= $1 ORDER BY id LIMIT $2""",
            now,
            limit,
        )
        return [DueEffect(r[0], r[1], orjson.loads(r[2]), r[3]) for r in rows]

    async def done(self, effect_id: int) -> None:
        await self.pool.execute(f"DELETE FROM {EFFECTS} WHERE id = $1", effect_id)

    async def later(self, effect_id: int, due_at: datetime) -> None:
        await self.pool.execute(
            f"UPDATE {EFFECTS} SET due_at = $2, attempts = attempts + 1 WHERE id = $1",
            effect_id,
            due_at,
        )

    async def refused(self, effect_id: int, reason: str) -> None:
        await self.pool.execute(
            f"UPDATE {EFFECTS} SET error = $2 WHERE id = $1", effect_id, reason[:500]
        )
