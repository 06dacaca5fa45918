"""A real PostgreSQL for tests: DATABASE_URL if set, else the embedded server.

Each test that needs isolation gets a fresh database cloned from a template that already has
every migration applied, which takes a few milliseconds instead of re-running migrations.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.db import embedded


def base_dsn() -> tuple[str, Any]:
    """The server to test against, and a handle to stop it (None for an external server)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    data_dir = Path(os.environ.get("CRM_TEST_PGDATA", "/var/tmp/crm-suite/test-pgdata"))
    shared_with_others = embedded.running(data_dir)
    dsn, server = embedded.start(data_dir)
    # Another test run or benchmark started it: leave it running for them.
    return dsn, None if shared_with_others else server


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


class DatabaseFactory:
    """Creates databases named crm_t_<run>_<n> from a migrated template; drops them at the end."""

    def __init__(self, admin_dsn: str, migrate: Callable[[str], Awaitable[None]]) -> None:
        self.admin_dsn = admin_dsn
        self._migrate = migrate
        self._run = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self.template = f"crm_t_{self._run}_template"
        self._created: list[str] = []

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.admin_dsn)

    async def setup(self) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{self.template}"')
        finally:
            await conn.close()
        self._created.append(self.template)
        await self._migrate(with_database(self.admin_dsn, self.template))

    async def create(self, *, empty: bool = False) -> str:
        """A fresh database: migrated (a copy of the template), or ``empty`` (nothing applied)."""
        name = f"crm_t_{self._run}_{next(self._counter)}"
        template = "template0" if empty else self.template
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.close()
        self._created.append(name)
        return with_database(self.admin_dsn, name)

    async def drop(self, dsn: str) -> None:
        """Drop one database ``create`` made, once its test is over (so that the run's end does
        not have thousands to drop at once)."""
        name = urlsplit(dsn).path.lstrip("/")
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self._created:
            self._created.remove(name)

    async def drop_all(self) -> None:
        conn = await self._admin()
        try:
            for name in reversed(self._created):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _pg_ctl(server: Any, *args: str) -> None:
    """Run pg_ctl as the server's owner. Through runuser, not subprocess's ``user=``: that forks
    the whole (gRPC-threaded) test process, whose fork handlers can crash the child."""
    command = [str(server.bin_path / "pg_ctl"), "-w", "-D", str(server.pgdata), *args]
    if server.system_user:
        command = ["runuser", "-u", server.system_user, "--", *command]
    subprocess.run(command, check=True, timeout=60, capture_output=True)  # noqa: S603


def restart_embedded(server: Any) -> None:
    """Restart an embedded server the way an operator would (``pg_ctl restart -m fast``: every
    session is terminated, new connections are refused until it is back)."""
    _pg_ctl(server, "-m", "fast", "-l", str(server.log), "restart")


def stop_embedded(server: Any) -> None:
    """Stop an embedded server (also one restarted by ``restart_embedded``, which the handle's
    own stop() no longer recognises)."""
    _pg_ctl(server, "-m", "fast", "stop")
