"""Everything a fresh database needs for the given services (tests, benchmarks): the event
store, the projection bookkeeping, and each service's migrations and read-model schemas."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.runtime import migrate_database
from shared.service import ServiceSpec


async def migrate_everything(dsn: str, services: Sequence[ServiceSpec]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate_database(
            conn,
            [m for spec in services for m in spec.migrations],
            [p for spec in services for p in spec.projections()],
        )
    finally:
        await conn.close()
