"""What the audit tests share: running `crm` as an auditor would (in a thread, its own event
loop), and tampering with the log as a database superuser would (triggers off)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from services.cli import app
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.audit.checkpoints import SigningKey, b64
from shared.eventstore.postgres import PostgresEventStore


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)

    def kinds(self) -> set[str]:
        return {f["kind"] for f in self.json()["findings"]}


# The commands that go through the Admin API unless given --database-url: these tests run their
# database path (tests/admin/test_log_audit.py runs the Admin API's).
THROUGH_API = (("audit", "checkpoint"), ("events", "export"))


async def crm(*args: str, dsn: str = "", key: SigningKey | None = None) -> Run:
    env = {"DATABASE_URL": dsn, "CHECKPOINT_SIGNING_KEY": key.private_text() if key else ""}
    if dsn and tuple(args[:2]) in THROUGH_API:
        args = (*args, "--database-url", dsn)
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def ev(**data: object) -> NewEvent:
    return NewEvent("test.v1.Tested", dict(data), {"actor": "audit-test"})


async def fill(store: PostgresEventStore, streams: int = 3, events: int = 2) -> None:
    for s in range(streams):
        await store.append(f"c-{s}", [ev(n=i, s=s) for i in range(events)], StreamState.NO_STREAM)


async def tamper(store: PostgresEventStore, *statements: str) -> None:
    """Run statements with the append-only triggers off, as a superuser can."""
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql in statements:
            await conn.execute(sql)


async def checkpoints_file(dsn: str, path: Path) -> Path:
    """`crm audit checkpoint > path`, as an auditor keeps it."""
    run = await crm("audit", "checkpoint", dsn=dsn)
    assert run.code == 0, run.stderr
    path.write_text(run.stdout)  # noqa: ASYNC240 - a small test file
    return path


async def verify_against(dsn: str, checkpoints: Path, key: SigningKey) -> Run:
    return await crm(
        "events",
        "verify",
        "--against",
        str(checkpoints),
        "--public-key",
        b64(key.public_key),
        "--json",
        dsn=dsn,
    )


def recompute_chain(stream: str) -> str:
    """SQL that recomputes a stream's hash chain over its current content, as an attacker who
    knows the hash function would after rewriting it."""
    return f"""DO $$ DECLARE r record; prev bytea := ''::bytea; BEGIN
        FOR r IN SELECT * FROM eventstore.events WHERE stream_id = '{stream}' ORDER BY version
        LOOP
            UPDATE eventstore.events SET hash = eventstore.event_hash(prev, r.event_id,
                r.stream_id, r.version, r.type, r.data, r.metadata, r.recorded_at)
            WHERE position = r.position RETURNING hash INTO prev;
        END LOOP; END $$"""


def swap_positions(a: int, b: int) -> list[str]:
    """SQL swapping two events' positions (the primary key, hence three steps)."""
    return [
        f"UPDATE eventstore.events SET position = -1 WHERE position = {a}",
        f"UPDATE eventstore.events SET position = {a} WHERE position = {b}",
        f"UPDATE eventstore.events SET position = {b} WHERE position = -1",
    ]
