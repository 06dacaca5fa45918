"""Side-by-side rebuild: build a projection's read model again from position 0 into a new
schema while the live one keeps serving, then switch in one transaction. No downtime, and no
side effects (the rebuild runs in replay mode)."""

from __future__ import annotations

import asyncpg

from shared.eventstore import EventStore
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import Projection
from shared.projections.runner import ProjectionRunner, quote_ident, record_definition


async def rebuild(store: PostgresEventStore, projection: Projection, batch_size: int = 2000) -> int:
    """Rebuild ``projection``; return the position the new read model starts from."""
    return await rebuild_into(
        store,
        store.pool,
        store.dsn,
        projection,
        projection.name,
        projection.schema,
        batch_size=batch_size,
    )


async def rebuild_into(
    store: EventStore,
    pool: asyncpg.Pool,
    dsn: str,
    projection: Projection,
    name: str,
    schema: str,
    *,
    batch_size: int = 2000,
    until: int | None = None,
) -> int:
    """Rebuild ``projection`` (checkpoint ``name``, tables in ``schema``) from position 0 with
    its current definition; return the position the new read model starts from. With ``until``
    (the leader's own checkpoint, while it holds the lead) the new tables cover exactly the
    events up to it and the checkpoint stays there; otherwise they cover everything visible at
    the switch."""
    shadow_name, shadow_schema, old_schema = f"{name}#rebuild", f"{schema}__next", f"{schema}__old"
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(shadow_schema)} CASCADE")
        await conn.execute("DELETE FROM projections.checkpoints WHERE name = $1", shadow_name)
    shadow = ProjectionRunner(
        store,
        projection,
        name=shadow_name,
        schema=shadow_schema,
        replay=True,
        batch_size=batch_size,
        pool=pool,
        dsn=dsn,
    )
    await shadow.catch_up(until)  # the long part; the live projection keeps running meanwhile
    async with pool.acquire() as conn, conn.transaction():
        # Lock the live checkpoint: the live runner's next batch waits for the switch, then
        # continues from the shadow's position in the new schema.
        await conn.execute(
            """INSERT INTO projections.checkpoints (name, position) VALUES ($1, 0)
               ON CONFLICT (name) DO NOTHING""",
            name,
        )
        await conn.execute(
            "SELECT position FROM projections.checkpoints WHERE name = $1 FOR UPDATE", name
        )
        # The tail that arrived during the long part (what is visible from here: later events
        # reach the live runner after the switch, from the checkpoint set below).
        position = until if until is not None else await shadow.catch_up(visible_only=True)
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(old_schema)} CASCADE")
        await conn.execute(
            f"ALTER SCHEMA {quote_ident(schema)} RENAME TO {quote_ident(old_schema)}"
        )
        await conn.execute(
            f"ALTER SCHEMA {quote_ident(shadow_schema)} RENAME TO {quote_ident(schema)}"
        )
        await conn.execute(
            "UPDATE projections.checkpoints SET position = $2, updated_at = now() WHERE name = $1",
            name,
            position,
        )
        await conn.execute("DELETE FROM projections.checkpoints WHERE name = $1", shadow_name)
        await conn.execute(
            "DELETE FROM projections.definitions WHERE schema_name = $1", shadow_schema
        )
        await record_definition(conn, schema, projection)
        await conn.execute(f"DROP SCHEMA {quote_ident(old_schema)} CASCADE")
    return position
