"""Everything a fresh database needs, in dependency order (tests, benchmarks, dev runs): the
event store, the projection bookkeeping, and each registered service's migrations and read-model
schemas."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.db import migrate
from shared.eventstore import postgres
from shared.projections import store as projections_store
from shared.projections.runner import ensure_schema
from shared.service import ServiceSpec


async def migrate_everything(dsn: str, services: Sequence[ServiceSpec]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, "eventstore", postgres.MIGRATIONS)
        await migrate(conn, "projections", projections_store.MIGRATIONS)
        for spec in services:
            for component, directory in spec.migrations:
                await migrate(conn, component, directory)
        for spec in services:
            for projection in spec.projections():
                await ensure_schema(conn, projection, projection.schema)
    finally:
        await conn.close()
