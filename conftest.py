"""Fixtures shared by every test: a real PostgreSQL (DATABASE_URL or the embedded server)."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import AsyncIterator

import pytest
from hypothesis import settings

from services.registry import SERVICES
from shared.testing.postgres import DatabaseFactory, base_dsn
from shared.testing.suite import migrate_everything

# CI explores the same examples every run (a red CI must mean a change broke something); a
# developer's run explores new ones each time (set CI=true to reproduce CI's).
DROP_SECONDS = 60
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
async def databases() -> AsyncIterator[DatabaseFactory]:
    dsn, server = base_dsn()
    factory = DatabaseFactory(dsn, lambda d: migrate_everything(d, SERVICES))
    await factory.setup()
    yield factory
    try:  # bounded: a database that cannot be dropped must not hang the run after it passed
        await asyncio.wait_for(factory.drop_all(), DROP_SECONDS)
    except TimeoutError:
        warnings.warn(f"test databases not all dropped within {DROP_SECONDS} s", stacklevel=1)
    if server is not None and not os.environ.get("CRM_TEST_KEEP_SERVER"):
        server.stop()


@pytest.fixture
async def dsn(databases: DatabaseFactory) -> AsyncIterator[str]:
    """A fresh, fully migrated database for one test, dropped after it."""
    url = await databases.create()
    yield url
    await databases.drop(url)


@pytest.fixture
async def empty_dsn(databases: DatabaseFactory) -> AsyncIterator[str]:
    """A fresh database with nothing applied yet (the migration tests), dropped after it."""
    url = await databases.create(empty=True)
    yield url
    await databases.drop(url)
