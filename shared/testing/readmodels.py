"""Read models compared as data: a schema's tables as sorted JSON rows, and the same projection
built afresh from the log into a scratch schema of its own (replay, nothing appended)."""

from __future__ import annotations

import asyncpg

from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import Projection
from shared.projections.runner import ProjectionRunner

Snapshot = dict[str, list[str]]


async def snapshot(pool: asyncpg.Pool, schema: str) -> Snapshot:
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    out = {}
    for t in tables:
        name = t["table_name"]
        rows = await pool.fetch(f'SELECT to_jsonb(t)::text FROM "{schema}"."{name}" t ORDER BY 1')
        out[name] = [r[0] for r in rows]
    return out


async def fresh(store: PostgresEventStore, projection: Projection, until: int) -> Snapshot:
    """``projection`` built from position 0 up to ``until`` into ``<schema>__fresh``."""
    schema = f"{projection.schema}__fresh"
    runner = ProjectionRunner(
        store, projection, name=f"{projection.name}#fresh", schema=schema, replay=True
    )
    await runner.catch_up(until)
    return await snapshot(store.pool, schema)
