"""Side-by-side rebuild: build a projection's read model again from position 0 into a scratch
schema (``<schema>__next``, checkpoint ``<name>#rebuild``) while the live one keeps serving, then
switch in one transaction. No downtime, and no side effects: the rebuild runs in replay mode.

- One rebuild of a projection at a time: a session advisory lock (``rebuild:<name>``) is held
  for the whole rebuild.
- Resumable: the scratch schema commits its own checkpoint with its writes, like any runner, so
  a rebuild whose process died continues from there when asked again — if the scratch schema
  was built from the current definition and is not ahead of where this rebuild must stop.
- Where it stops (docs/architecture.md §3):
  * ``until``: a fixed position (a leader rebuilding its own read model up to its checkpoint
    after a definition change);
  * ``live``: the live checkpoint, followed while the live runner moves on and taken as it is
    at the switch (an operator's rebuild beside a running leader). The switch holds the live
    checkpoint row, so the leader's next batch waits and continues in the new tables, from the
    same checkpoint: nothing is skipped or done twice, even for a projection whose replay does
    less than its live run (an engine) — the events such a projection appended itself beyond
    that checkpoint (its ``replay_only_types``) are folded in too, as they answer events at or
    below it;
  * neither: everything visible at the switch, which becomes the checkpoint (tools and tests,
    with no live runner that could be ahead).
- Parked events: the new read model's own (the scratch runner parks like any runner) replace
  the old one's at the switch.
- The switch never deadlocks with readers: after the checkpoint row (the order a runner's batch
  takes too) it locks every table of both schemas at once with a short ``lock_timeout``; a
  reader holding one of them (a join over two tables) makes it give up, roll back and try again
  shortly, instead of dropping one table and waiting for the next while the reader waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

import asyncpg

from shared.events.upcast import upcast_all
from shared.eventstore import EventStore
from shared.eventstore.postgres import PostgresEventStore, committed_after_on
from shared.projections.leaders import REBUILD
from shared.projections.model import ApplyContext, Projection, replay_only
from shared.projections.runner import ProjectionRunner
from shared.projections.schema import definition_hash, quote_ident, record_definition


class RebuildBusy(Exception):
    """Another session is rebuilding this projection."""


@dataclass(frozen=True)
class Progress:
    phase: str  # "catching_up", "switching", "done"
    resumed_from: int  # the scratch checkpoint this attempt started from (0: from scratch)
    position: int  # the scratch read model's checkpoint
    target: int  # where it is headed (the live checkpoint, ``until``; 0 when unknown)
    applied: int  # events this attempt has applied


def scratch(name: str, schema: str) -> tuple[str, str, str]:
    """(scratch checkpoint name, scratch schema, old schema) of a rebuild of ``name``."""
    return f"{name}#rebuild", f"{schema}__next", f"{schema}__old"


async def rebuild(store: PostgresEventStore, projection: Projection, batch_size: int = 2000) -> int:
    """Rebuild ``projection`` up to everything visible; return the position the new read model
    starts from."""
    return await rebuild_into(
        store,
        store.pool,
        store.dsn,
        projection,
        projection.name,
        projection.schema,
        batch_size=batch_size,
    )


async def rebuild_into(
    store: EventStore,
    pool: asyncpg.Pool,
    dsn: str,
    projection: Projection,
    name: str,
    schema: str,
    *,
    batch_size: int = 2000,
    until: int | None = None,
    live: bool = False,
    wait: bool = True,
    progress: Callable[[Progress], None] | None = None,
) -> int:
    """Rebuild ``projection`` (checkpoint ``name``, tables in ``schema``) with its current
    definition, stopping as the module docstring says; return the position the new read model
    starts from. ``wait``: wait for a rebuild running elsewhere to end (else RebuildBusy).
    ``progress`` is called after each batch and at each phase."""
    lock_conn = await asyncpg.connect(dsn)
    try:
        key = "hashtext($1 || $2)"
        if wait:
            await lock_conn.execute(f"SELECT pg_advisory_lock({key})", REBUILD, name)
        elif not await lock_conn.fetchval(f"SELECT pg_try_advisory_lock({key})", REBUILD, name):
            raise RebuildBusy(name)
        return await _Rebuild(
            store, pool, projection, name, schema, batch_size, progress or (lambda _p: None)
        ).run(until, live)
    finally:
        await lock_conn.close()  # releases the lock


SWITCH_ATTEMPTS = 50
SWITCH_LOCK_TIMEOUT = "500ms"


class _Rebuild:
    def __init__(
        self,
        store: EventStore,
        pool: asyncpg.Pool,
        projection: Projection,
        name: str,
        schema: str,
        batch_size: int,
        progress: Callable[[Progress], None],
    ) -> None:
        self.store, self.pool, self.projection = store, pool, projection
        self.name, self.schema, self.batch_size = name, schema, batch_size
        self.shadow_name, self.shadow_schema, self.old_schema = scratch(name, schema)
        self.progress = progress
        self.state = Progress("catching_up", 0, 0, 0, 0)
        self.own = replay_only(projection)
        if self.own and not isinstance(store, PostgresEventStore):
            raise TypeError(f"{name} appends events itself: its rebuild needs PostgreSQL")

    def _report(self, **changes: object) -> None:
        self.state = replace(self.state, **changes)  # type: ignore[arg-type]
        self.progress(self.state)

    async def run(self, until: int | None, live: bool) -> int:
        limit = until if until is not None else (await self._live() if live else None)
        resumed = await self._prepare(limit)
        shadow = ProjectionRunner(
            self.store,
            self.projection,
            name=self.shadow_name,
            schema=self.shadow_schema,
            replay=True,
            batch_size=self.batch_size,
            pool=self.pool,
            dsn="",  # never leads: it is driven by catch_up only
        )
        shadow.on_batch = lambda r: self._report(position=r.position, applied=r.applied)
        self._report(resumed_from=resumed, position=resumed, target=limit or 0)
        # The long part; the live projection keeps running meanwhile.
        if until is not None:
            await shadow.catch_up(until)
        elif live:
            while True:  # follow the live checkpoint until one more round is a short one
                target = await self._live()
                self._report(target=target)
                before = shadow.applied
                await shadow.catch_up(target)
                if shadow.applied - before < self.batch_size:
                    break
        else:
            await shadow.catch_up()
        self._report(phase="switching")
        position = await self._switch(shadow, until, live)
        self._report(phase="done", position=position, target=position)
        return position

    async def _live(self) -> int:
        v = await self.pool.fetchval(
            "SELECT position FROM projections.checkpoints WHERE name = $1", self.name
        )
        return int(v or 0)

    async def _prepare(self, limit: int | None) -> int:
        """Keep the scratch read model of an interrupted rebuild when it can be resumed; return
        its checkpoint (0: starting from scratch)."""
        async with self.pool.acquire() as conn:
            exists = await conn.fetchval(
                "SELECT true FROM pg_namespace WHERE nspname = $1", self.shadow_schema
            )
            built_from = await conn.fetchval(
                "SELECT ddl_hash FROM projections.definitions WHERE schema_name = $1",
                self.shadow_schema,
            )
            position = await conn.fetchval(
                "SELECT position FROM projections.checkpoints WHERE name = $1", self.shadow_name
            )
            position = int(position or 0)
            if (
                exists
                and built_from == definition_hash(self.projection)
                and (limit is None or position <= limit)
            ):
                return position
            async with conn.transaction():
                await conn.execute(
                    f"DROP SCHEMA IF EXISTS {quote_ident(self.shadow_schema)} CASCADE"
                )
                await conn.execute(
                    "DELETE FROM projections.checkpoints WHERE name = $1", self.shadow_name
                )
                await conn.execute(
                    "DELETE FROM projections.definitions WHERE schema_name = $1", self.shadow_schema
                )
                await conn.execute(
                    "DELETE FROM projections.parked WHERE name = $1", self.shadow_name
                )
        return 0

    async def _switch(self, shadow: ProjectionRunner, until: int | None, live: bool) -> int:
        """Switch, again after a short pause while others hold the tables (the shadow's catch-up
        commits on its own, so a switch rolled back loses nothing)."""
        for attempt in range(SWITCH_ATTEMPTS):
            try:
                return await self._switch_once(shadow, until, live)
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                if attempt == SWITCH_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        raise AssertionError("unreachable")

    async def _switch_once(self, shadow: ProjectionRunner, until: int | None, live: bool) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # Hold the live checkpoint: the live runner's next batch waits for the switch, then
            # continues from the checkpoint set below, in the new tables.
            await conn.execute(
                """INSERT INTO projections.checkpoints (name, position) VALUES ($1, 0)
                   ON CONFLICT (name) DO NOTHING""",
                self.name,
            )
            current = await conn.fetchval(
                "SELECT position FROM projections.checkpoints WHERE name = $1 FOR UPDATE",
                self.name,
            )
            if until is not None:
                position = until
            elif live:
                position = int(current)
                await shadow.catch_up(position)  # below the live runner's horizon: visible
            else:
                # The tail that arrived during the long part (what is visible from here: later
                # events reach the live runner after the switch, from the checkpoint set below).
                position = await shadow.catch_up(visible_only=True)
            self._report(position=shadow.position)
            await self._lock_tables(conn)
            schema, old, new = (
                quote_ident(s) for s in (self.schema, self.old_schema, self.shadow_schema)
            )
            await conn.execute(f"DROP SCHEMA IF EXISTS {old} CASCADE")
            if await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", self.schema):
                await conn.execute(f"ALTER SCHEMA {schema} RENAME TO {old}")
            await conn.execute(f"ALTER SCHEMA {new} RENAME TO {schema}")
            # Waits for whoever is still writing the old tables (a timer of the engine), so
            # that what they appended is committed before it is read below.
            await conn.execute(f"DROP SCHEMA IF EXISTS {old} CASCADE")
            if self.own and (until is not None or live):
                await self._fold_replay_only(conn, position)
            await conn.execute(
                "UPDATE projections.checkpoints SET position = $2, updated_at = now()"
                " WHERE name = $1",
                self.name,
                position,
            )
            await conn.execute(
                "DELETE FROM projections.checkpoints WHERE name = $1", self.shadow_name
            )
            await conn.execute(
                "DELETE FROM projections.definitions WHERE schema_name = $1", self.shadow_schema
            )
            await record_definition(conn, self.schema, self.projection)
            await conn.execute("DELETE FROM projections.parked WHERE name = $1", self.name)
            await conn.execute(
                "UPDATE projections.parked SET name = $1 WHERE name = $2",
                self.name,
                self.shadow_name,
            )
        return position

    async def _lock_tables(self, conn: asyncpg.Connection) -> None:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1::text[])",
            [self.schema, self.shadow_schema, self.old_schema],
        )
        if tables:
            names = ", ".join(f"{quote_ident(s)}.{quote_ident(t)}" for s, t in tables)
            await conn.execute(f"SET LOCAL lock_timeout = '{SWITCH_LOCK_TIMEOUT}'")
            await conn.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
            await conn.execute("SET LOCAL lock_timeout = 0")

    async def _fold_replay_only(self, conn: asyncpg.Connection, position: int) -> None:
        """The events the projection appended itself after ``position``, answering events at
        or below it (its live run's last batch, its timers): folded in replay like the rest.
        The live runner, held at ``position``, cannot append more meanwhile."""
        events = upcast_all(await committed_after_on(conn, position, self.own))
        if events:
            await conn.execute(f"SET LOCAL search_path TO {quote_ident(self.schema)}, public")
            await self.projection.apply(conn, events, ApplyContext(replay=True))
            await conn.execute("SET LOCAL search_path TO DEFAULT")
