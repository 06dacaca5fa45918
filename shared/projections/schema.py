"""A read model's schema: created with its tables from the projection's DDL when it does not
exist, and the hash of the definition it was built from (projections.definitions), so that a
changed DDL is noticed and its leader rebuilds it side by side (runner.py, rebuild.py)."""

from __future__ import annotations

import hashlib

import asyncpg

from shared.projections.model import Projection


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def definition_hash(projection: Projection) -> str:
    """What a read model's tables are built from: the projection's DDL, whitespace aside."""
    return hashlib.sha256(" ".join(projection.ddl.split()).encode()).hexdigest()


async def record_definition(conn: asyncpg.Connection, schema: str, projection: Projection) -> None:
    await conn.execute(
        """INSERT INTO projections.definitions (schema_name, ddl_hash) VALUES ($1, $2)
           ON CONFLICT (schema_name)
           DO UPDATE SET ddl_hash = excluded.ddl_hash, built_at = now()""",
        schema,
        definition_hash(projection),
    )


async def ensure_schema(conn: asyncpg.Connection, projection: Projection, schema: str) -> bool:
    """Create the read model's schema and tables if the schema does not exist yet. Return True
    when it exists but was built from another definition (its leader then rebuilds it)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('schema:' || $1))", schema)
        exists = await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema)
        if not exists:
            await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}, public")
            await conn.execute(projection.ddl)
            await record_definition(conn, schema, projection)
            return False
        built_from = await conn.fetchval(
            "SELECT ddl_hash FROM projections.definitions WHERE schema_name = $1", schema
        )
        return bool(built_from != definition_hash(projection))
