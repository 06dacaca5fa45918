"""Everything a fresh database needs, in dependency order (tests, benchmarks, dev runs)."""

from __future__ import annotations

import asyncpg

from shared.db import migrate


async def migrate_everything(dsn: str) -> None:
    from services.contacts.adapters import keys
    from services.contacts.adapters.consent_readmodel import ConsentProjection
    from services.contacts.adapters.readmodel import ContactsProjection
    from services.orders.adapters.readmodel import CartsProjection, OrdersProjection
    from shared.eventstore import postgres
    from shared.projections import store as projections_store
    from shared.projections.runner import ensure_schema

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, "eventstore", postgres.MIGRATIONS)
        await migrate(conn, "projections", projections_store.MIGRATIONS)
        await migrate(conn, "contacts", keys.MIGRATIONS)
        for projection in (
            ContactsProjection(),
            ConsentProjection(),
            OrdersProjection(),
            CartsProjection(),
        ):
            await ensure_schema(conn, projection, projection.schema)
    finally:
        await conn.close()
