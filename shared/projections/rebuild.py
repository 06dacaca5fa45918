"""Side-by-side rebuild: build a projection's read model again from position 0 into a new
schema while the live one keeps serving, then switch in one transaction. No downtime, and no
side effects (the rebuild runs in replay mode)."""

from __future__ import annotations

from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import Projection
from shared.projections.runner import ProjectionRunner, quote_ident


async def rebuild(store: PostgresEventStore, projection: Projection, batch_size: int = 2000) -> int:
    """Rebuild ``projection``; return the position the new read model starts from."""
    name, schema = projection.name, projection.schema
    shadow_name, shadow_schema, old_schema = f"{name}#rebuild", f"{schema}__next", f"{schema}__old"
    async with store.pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(shadow_schema)} CASCADE")
        await conn.execute("DELETE FROM projections.checkpoints WHERE name = $1", shadow_name)
    shadow = ProjectionRunner(
        store,
        projection,
        name=shadow_name,
        schema=shadow_schema,
        replay=True,
        batch_size=batch_size,
    )
    await shadow.catch_up()  # the long part; the live projection keeps running meanwhile
    async with store.pool.acquire() as conn, conn.transaction():
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
        position = await shadow.catch_up(visible_only=True)
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
        await conn.execute(f"DROP SCHEMA {quote_ident(old_schema)} CASCADE")
    return position
