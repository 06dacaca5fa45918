"""The flow runs as ListFlowRuns reads them from the flow engine's table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from services.notifications.adapters.flow_run_tables import SCHEMA, RunRow, run_of
from services.notifications.domain.flows import run as runs
from shared.domain import paging


class FlowRunQueries:
    """The runs for ListFlowRuns: newest first, keyset pages on (start time, run id)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(
        self, contact_id: str, flow_id: str, open_only: bool, size: int, token: str
    ) -> tuple[list[RunRow], str]:
        query = f"runs|{contact_id}|{flow_id}|{open_only}"
        after = paging.decode_token(token, query) if token else None
        at, run_id = (after[0], after[1]) if after else ("infinity", str(uuid.UUID(int=2**128 - 1)))
        try:
            rows = await self._fetch(contact_id, flow_id, open_only, at, run_id, size)
        except asyncpg.UndefinedTableError:  # the engine (project role) never started: no runs
            return [], ""
        page = [run_of(r) for r in rows[:size]]
        if len(rows) <= size:
            return page, ""
        last = page[-1]
        return page, paging.encode_token([last.start_time.isoformat(), last.run.run_id], query)

    async def _fetch(
        self, contact_id: str, flow_id: str, open_only: bool, at: str, run_id: str, size: int
    ) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"""SELECT * FROM {SCHEMA}.runs
                WHERE ($1::uuid IS NULL OR contact_id = $1) AND ($2::uuid IS NULL OR flow_id = $2)
                  AND (NOT $3 OR status <> $4)
                  AND (start_time, run_id) < ($5::timestamptz, $6::uuid)
                ORDER BY start_time DESC, run_id DESC LIMIT $7""",
            uuid.UUID(contact_id) if contact_id else None,
            uuid.UUID(flow_id) if flow_id else None,
            open_only,
            runs.DONE,
            datetime.fromisoformat(at) if at != "infinity" else datetime.max.replace(tzinfo=UTC),
            uuid.UUID(run_id),
            size + 1,
        )
