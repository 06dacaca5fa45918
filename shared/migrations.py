"""What a database needs for a set of services: the event store, the projection bookkeeping, each
service's SQL migrations and its read models' schemas. One process applies it and the others wait
for it (docs/architecture.md §8): in a deployment the migrate command (`python -m
services.migrate`, the crm-migrate Job) applies it and the roles, started with
MIGRATE_ON_START=false, wait NOT_SERVING until it is there; on a developer's machine and in the
tests each role migrates at start (the default), serialised by an advisory lock."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import structlog

from shared.db import migrate, pending
from shared.db.errors import transient
from shared.eventstore.postgres import MIGRATIONS as STORE_MIGRATIONS
from shared.projections.model import Projection
from shared.projections.schema import ensure_schema
from shared.projections.store import MIGRATIONS as PROJECTION_MIGRATIONS
from shared.service import ServiceSpec

Migrations = Sequence[tuple[str, Path]]  # (component, folder of NNNN_name.sql files)
WAIT_EVERY = 2.0  # seconds between looks while waiting for the migrations
REPORT_EVERY = 30.0  # seconds between log lines saying what is still missing
log = structlog.get_logger(__name__)


def _components(migrations: Migrations, store: bool) -> list[tuple[str, Path]]:
    """In dependency order: the store (when it lives in this database), the bookkeeping, the
    services' own."""
    own = [("eventstore", STORE_MIGRATIONS)] if store else []
    return [*own, ("projections", PROJECTION_MIGRATIONS), *migrations]


def of_services(services: Sequence[ServiceSpec]) -> tuple[list[tuple[str, Path]], list[Projection]]:
    """Every service's migrations and declared read models, in registry order."""
    migrations = [m for spec in services for m in spec.migrations]
    return migrations, [p for spec in services for p in spec.projections()]


async def migrate_database(
    conn: asyncpg.Connection,
    migrations: Migrations,
    projections: Sequence[Projection],
    *,
    store: bool = True,
) -> None:
    """Apply the (component, directory) ``migrations`` after the store's (``store``: when it
    lives in this database) and the projection bookkeeping's, then create the schemas of the
    ``projections`` that do not exist yet."""
    for component, directory in _components(migrations, store):
        await migrate(conn, component, directory)
    for projection in projections:
        await ensure_schema(conn, projection, projection.schema)


async def migrate_services(
    dsn: str, services: Sequence[ServiceSpec], *, store: bool = True
) -> None:
    """Everything ``services`` need, on a connection of its own to ``dsn`` (make run, tests)."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate_database(conn, *of_services(services), store=store)
    finally:
        await conn.close()


async def unmigrated(
    conn: asyncpg.Connection,
    migrations: Migrations,
    projections: Sequence[Projection],
    *,
    store: bool = True,
) -> list[str]:
    """What ``migrate_database`` would still do, without doing it: ``<component>/<file>`` for
    each migration not applied, ``schema <name>`` for each read-model schema missing."""
    missing = []
    for component, directory in _components(migrations, store):
        missing += [f"{component}/{name}" for name in await pending(conn, component, directory)]
    schemas = [projection.schema for projection in projections]
    rows = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", schemas
    )
    existing = {row["nspname"] for row in rows}
    return missing + [f"schema {schema}" for schema in schemas if schema not in existing]


async def wait_until_migrated(
    pool: asyncpg.Pool,
    migrations: Migrations,
    projections: Sequence[Projection],
    *,
    store: bool = True,
    every: float | None = None,
) -> None:
    """Return once nothing is missing, looking every ``every`` seconds (WAIT_EVERY); meanwhile
    say what is, every REPORT_EVERY seconds. Never migrates anything itself. A database that is
    away is waited for too."""
    reported = -math.inf
    while True:
        try:
            async with pool.acquire() as conn:
                missing = await unmigrated(conn, migrations, projections, store=store)
        except Exception as exc:
            if not transient(exc):
                raise
            missing = [f"database away: {type(exc).__name__}"]
        if not missing:
            if reported > -math.inf:
                log.info("database.migrated")
            return
        if time.monotonic() - reported >= REPORT_EVERY:
            reported = time.monotonic()
            log.warning(
                "database.not_migrated",
                missing=missing[:10],
                count=len(missing),
                hint="MIGRATE_ON_START=false: waiting for `python -m services.migrate` "
                "(the crm-migrate Job) to apply them",
            )
        await asyncio.sleep(WAIT_EVERY if every is None else every)
