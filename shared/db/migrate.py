"""Forward-only SQL migrations, one folder of numbered ``NNNN_name.sql`` files per component.

Applied under an advisory lock, so several processes migrating at once apply each file exactly
once. ``pending`` only reads: a process that must not migrate (MIGRATE_ON_START=false) uses it to
wait for the one that does (shared/migrations.py).
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

_LOCK_KEY = 0x63726D5F6D6967  # "crm_mig"


async def migrate(conn: asyncpg.Connection, component: str, directory: Path) -> list[str]:
    """Apply the files of ``directory`` not yet recorded for ``component``; return their names."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS public.crm_migrations (
                   component text NOT NULL, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, name))"""
        )
        done = {
            r["name"]
            for r in await conn.fetch(
                "SELECT name FROM public.crm_migrations WHERE component = $1", component
            )
        }
        # Blocking file reads are fine here: a handful of small files, once at start-up.
        for path in sorted(directory.glob("*.sql")):  # noqa: ASYNC240
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO public.crm_migrations (component, name) VALUES ($1, $2)",
                    component,
                    path.name,
                )
            applied.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied


async def pending(conn: asyncpg.Connection, component: str, directory: Path) -> list[str]:
    """The files of ``directory`` not yet applied for ``component`` (read-only)."""
    files = sorted(path.name for path in directory.glob("*.sql"))  # noqa: ASYNC240
    if not await conn.fetchval("SELECT to_regclass('public.crm_migrations') IS NOT NULL"):
        return files
    done = {
        r["name"]
        for r in await conn.fetch(
            "SELECT name FROM public.crm_migrations WHERE component = $1", component
        )
    }
    return [name for name in files if name not in done]
