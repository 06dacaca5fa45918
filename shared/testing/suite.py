"""Every component's migrations, in dependency order (used by tests, benchmarks and dev runs)."""

from __future__ import annotations

import asyncpg

from shared.db import migrate


def components() -> list[tuple[str, object]]:
    from services.contacts.adapters import readmodel as contacts_rm
    from shared.eventstore import postgres
    from shared.projections import store as projections_store

    return [
        ("eventstore", postgres.MIGRATIONS),
        ("projections", projections_store.MIGRATIONS),
        ("contacts", contacts_rm.MIGRATIONS),
    ]


async def migrate_everything(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for name, path in components():
            await migrate(conn, name, path)  # type: ignore[arg-type]
    finally:
        await conn.close()
