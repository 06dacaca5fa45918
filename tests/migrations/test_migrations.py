"""Migrations applied once by the migrate command while the roles wait for them
(shared/migrations.py, services/migrate.py), or by each role at start (the default)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.contacts.spec import SPEC as CONTACTS
from services.migrate import run as migrate_command
from services.registry import SERVICES
from shared import migrations, runtime
from shared.db import migrate, pending
from shared.eventstore.postgres import MIGRATIONS as STORE_MIGRATIONS
from shared.migrations import migrate_database, of_services, unmigrated
from shared.projections.store import MIGRATIONS as PROJECTION_MIGRATIONS
from shared.settings import Settings


@pytest.fixture
async def conn(empty_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(empty_dsn)
    yield c
    await c.close()


def files(component: str, directory: Path) -> list[str]:
    return [f"{component}/{path.name}" for path in sorted(directory.glob("*.sql"))]


async def has_migrations_table(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('public.crm_migrations') IS NOT NULL"))


async def test_an_empty_database_lacks_everything_until_migrated(
    conn: asyncpg.Connection,
) -> None:
    parts, projections = of_services(SERVICES)
    expected = files("eventstore", STORE_MIGRATIONS) + files("projections", PROJECTION_MIGRATIONS)
    for component, directory in parts:
        expected += files(component, directory)
    expected += [f"schema {p.schema}" for p in projections]
    assert len(expected) > len(projections) + 4  # the store's, the bookkeeping's, contacts' keys
    assert await unmigrated(conn, parts, projections) == expected
    assert not await has_migrations_table(conn), "looking must change nothing"
    await migrate_database(conn, parts, projections)
    assert await unmigrated(conn, parts, projections) == []
    # The event store lives elsewhere (EventStoreDB): its migrations are not asked for.
    await conn.execute("DELETE FROM public.crm_migrations WHERE component = 'eventstore'")
    assert await unmigrated(conn, parts, projections, store=False) == []
    assert await unmigrated(conn, parts, projections) == files("eventstore", STORE_MIGRATIONS)


async def test_a_new_release_migration_is_pending_until_applied(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE public.first (id int);")
    assert await migrate(conn, "sample", tmp_path) == ["0001_first.sql"]
    assert await pending(conn, "sample", tmp_path) == []
    (tmp_path / "0002_second.sql").write_text("CREATE TABLE public.second (id int);")
    assert await pending(conn, "sample", tmp_path) == ["0002_second.sql"]
    assert await unmigrated(conn, [("sample", tmp_path)], [], store=False) == [
        *files("projections", PROJECTION_MIGRATIONS),
        "sample/0002_second.sql",
    ]
    assert await migrate(conn, "sample", tmp_path) == ["0002_second.sql"]
    assert await pending(conn, "sample", tmp_path) == []


async def test_a_role_started_not_to_migrate_waits_for_the_migrate_command(
    empty_dsn: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "WAIT_EVERY", 0.05)
    settings = Settings(database_url=empty_dsn, migrate_on_start=False, db_pool_size=2)
    role = asyncio.create_task(
        runtime.connect(
            settings, migrations=CONTACTS.migrations, projections=CONTACTS.projections()
        )
    )
    await asyncio.sleep(0.5)
    assert not role.done(), "it must wait while nothing is migrated"
    assert not await has_migrations_table(conn), "and migrate nothing itself"
    command = Settings(database_url=empty_dsn)
    assert await migrate_command(command, check=True) == 1
    assert await migrate_command(command, check=False) == 0
    rt = await asyncio.wait_for(role, 10)
    await rt.close()
    assert await migrate_command(command, check=True) == 0
    assert await migrate_command(command, check=False) == 0  # again: nothing to do
    assert await unmigrated(conn, *of_services(SERVICES)) == []


async def test_a_waiting_role_stops_when_told_to_and_lets_go_of_its_connections(
    empty_dsn: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    others = """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()"""
    monkeypatch.setattr(migrations, "WAIT_EVERY", 0.05)
    settings = Settings(database_url=empty_dsn, migrate_on_start=False, db_pool_size=2)
    role = asyncio.create_task(runtime.connect(settings, projections=CONTACTS.projections()))
    await asyncio.sleep(0.3)
    assert await conn.fetchval(others) >= 1
    role.cancel()  # SIGTERM while waiting (runtime.serve: unless_stopped)
    with pytest.raises(asyncio.CancelledError):
        await role
    for _ in range(100):
        if await conn.fetchval(others) == 0:
            break
        await asyncio.sleep(0.05)
    assert await conn.fetchval(others) == 0, "the waiting role's pool was left open"


async def test_a_role_migrates_what_it_needs_at_start_by_default(
    empty_dsn: str, conn: asyncpg.Connection
) -> None:
    parts, projections = CONTACTS.migrations, CONTACTS.projections()
    rt = await runtime.connect(
        Settings(database_url=empty_dsn, db_pool_size=2), migrations=parts, projections=projections
    )
    await rt.close()
    assert await unmigrated(conn, parts, projections) == []
    others = [spec for spec in SERVICES if spec.name != CONTACTS.name]
    assert await unmigrated(conn, *of_services(others)), "only its own read models"
