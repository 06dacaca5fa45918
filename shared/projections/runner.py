"""The projection runner.

- Exactly-once effect: each batch's read-model writes and its checkpoint commit in one transaction.
- One active runner per projection: a session advisory lock; other replicas wait on standby.
- Supervised (shared/supervision.py): any error — a database restart, a dropped connection, a
  bug — is logged, and the runner starts again from its committed checkpoint after a backoff,
  for as long as the process lives. Its ``worker.healthy`` feeds the role's readiness.
- Poison events: a batch failing with a non-transient error is retried, then applied event by
  event; an event that still fails is parked with its error (projections.parked) and the runner
  moves on. A transient error (the database is away) never parks anything: the runner backs off
  and retries the same batch.
- Upcast: a projection (or reactor, or rebuild) gets each event in the current shape of its
  published message (shared/events/upcast.py), whenever it was stored.
- Side-by-side rebuild: see rebuild.py. The read model's schema and its definition: schema.py;
  the checkpoint row: checkpoints.py; parking: parked.py (``definition_hash`` and
  ``wait_for_checkpoint`` are still importable from here).
- Who leads: the leader records its host and pid in projections.leaders as it takes the lock
  (status.py reports it while that session still holds the lock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import structlog

from shared.db.errors import transient
from shared.events.upcast import upcast_all
from shared.eventstore import EventStore, ReadAllPage, RecordedEvent
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.checkpoints import lock_checkpoint, move_checkpoint, read_checkpoint
from shared.projections.checkpoints import wait_for_checkpoint as wait_for_checkpoint
from shared.projections.leaders import record_leader
from shared.projections.model import ApplyContext, Projection, live_types
from shared.projections.parked import park as park_event
from shared.projections.schema import definition_hash as definition_hash
from shared.projections.schema import ensure_schema, quote_ident
from shared.supervision import Worker, sleep_unless_stopped, supervise

log = structlog.get_logger(__name__)


class ProjectionRunner:
    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        *,
        name: str | None = None,
        schema: str | None = None,
        replay: bool = False,
        batch_size: int = 500,
        retries: int = 3,
        retry_delay: float = 0.05,
        standby_poll: float = 1.0,
        pool: asyncpg.Pool | None = None,
        dsn: str | None = None,
    ) -> None:
        # Checkpoints and read models live in PostgreSQL; events may come from another backend
        # (then ``pool`` and ``dsn`` name the database; with the PostgreSQL store, its own).
        self.store = store
        if pool is None or dsn is None:
            if not isinstance(store, PostgresEventStore):
                raise TypeError("a projection on this store needs the database's pool and dsn")
            pool, dsn = store.pool, store.dsn
        self.pool: asyncpg.Pool = pool
        self.dsn: str = dsn
        self.projection = projection
        self.name = name or projection.name
        self.schema = schema or projection.schema
        self.ctx = ApplyContext(replay=replay)
        self.batch_size = batch_size
        self.retries = retries
        self.retry_delay = retry_delay
        self.standby_poll = standby_poll
        self.position = 0
        self.active = False  # holds the leader lock
        self.worker = Worker(self.name)
        self.applied = 0  # events applied by this runner (rebuild progress)
        self.on_batch: Callable[[ProjectionRunner], None] | None = None  # after each batch
        self._advanced = asyncio.Condition()

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set: wait for leadership, then follow the log; after any error,
        back off and start again from the committed checkpoint (nothing is lost: the checkpoint
        only moves with committed writes)."""
        stop = stop or asyncio.Event()
        await supervise(self.worker, lambda: self._lead(stop), stop)

    async def _lead(self, stop: asyncio.Event) -> None:
        lock_conn = await asyncpg.connect(self.dsn)
        try:
            while not await lock_conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext('projection:' || $1))", self.name
            ):
                await sleep_unless_stopped(stop, self.standby_poll)
                if stop.is_set():
                    return
            await record_leader(lock_conn, self.name)
            lost = asyncio.Event()
            lock_conn.add_termination_listener(lambda _c: lost.set())
            self.active = True
            log.info("projection.leading", projection=self.name)
            follow = asyncio.create_task(self._follow())
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            try:
                done, _ = await asyncio.wait(
                    [follow, *waiters], return_when=asyncio.FIRST_COMPLETED
                )
                if follow in done:
                    follow.result()  # re-raise its error
                if lost.is_set():
                    raise ConnectionError("advisory lock connection lost")
            finally:
                await _cancel_all([follow, *waiters])
                self.active = False
        finally:
            with contextlib.suppress(Exception):
                await lock_conn.close()

    async def _follow(self) -> None:
        async with self.pool.acquire() as conn:
            outdated = await ensure_schema(conn, self.projection, self.schema)
            checkpoint = await read_checkpoint(conn, self.name)
        if outdated and not self.ctx.replay:
            # The tables were built from another definition (the code changed): build them
            # again side by side, up to our checkpoint, while the old ones keep serving; then
            # follow from that checkpoint as before. Up to it in replay mode (a reactor's
            # effects happened already), after it live: nothing is skipped or done twice.
            from shared.projections.rebuild import rebuild_into  # it builds on this module

            log.warning("projection.definition_changed", projection=self.name)
            await rebuild_into(
                self.store,
                self.pool,
                self.dsn,
                self.projection,
                self.name,
                self.schema,
                until=checkpoint,
            )
        await self._advance(checkpoint)  # wakes wait_for() even when nothing new arrives
        async for page in self.store.subscribe(
            self.position,
            categories=self.projection.categories,
            types=self.projection.types if self.ctx.replay else live_types(self.projection),
            batch_size=self.batch_size,
        ):
            await self.process(page.events, page.last_position)

    # --- one batch ---------------------------------------------------------------------------

    async def process(self, events: Sequence[RecordedEvent], last_position: int) -> None:
        """Apply a page and move the checkpoint to ``last_position``, exactly once."""
        events = upcast_all(events)
        for attempt in range(self.retries):
            try:
                await self._commit(events, last_position)
                break
            except Exception as exc:
                if transient(exc):
                    raise  # the database is away: the supervisor retries this batch later
                log.warning(
                    "projection.batch_failed",
                    projection=self.name,
                    attempt=attempt,
                    error=repr(exc),
                )
                await asyncio.sleep(self.retry_delay * 2**attempt)
        else:
            await self._one_by_one(events, last_position)
        self.applied += len(events)
        await self._advance(last_position)
        if self.on_batch is not None:
            self.on_batch(self)

    async def _commit(
        self, events: Sequence[RecordedEvent], last_position: int, *, park: str | None = None
    ) -> None:
        ctx = ApplyContext(self.ctx.replay)
        await self._commit_with(ctx, events, last_position, park)
        for then in ctx.after_commit:
            then()

    async def _commit_with(
        self,
        ctx: ApplyContext,
        events: Sequence[RecordedEvent],
        last_position: int,
        park: str | None,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            current = await lock_checkpoint(conn, self.name)  # a rebuild's switch may have
            todo = [e for e in events if e.position > current]  # covered some: skip those
            if todo and park is None:
                await conn.execute(f"SET LOCAL search_path TO {quote_ident(self.schema)}, public")
                await self.projection.apply(conn, todo, ctx)
            elif todo and park is not None:
                await park_event(conn, self.name, todo[0], park, self.retries)
            await move_checkpoint(conn, self.name, max(last_position, current))

    async def _one_by_one(self, events: Sequence[RecordedEvent], last_position: int) -> None:
        for e in events:
            error = ""
            for attempt in range(self.retries):
                try:
                    await self._commit([e], e.position)
                    break
                except Exception as exc:
                    if transient(exc):
                        raise
                    error = repr(exc)
                    await asyncio.sleep(self.retry_delay * 2**attempt)
            else:
                log.error(
                    "projection.parked",
                    projection=self.name,
                    position=e.position,
                    event_type=e.type,
                    error=error,
                )
                await self._commit([e], e.position, park=error)  # crm_parked_events: lag.py
        await self._commit([], last_position)

    async def _advance(self, position: int) -> None:
        async with self._advanced:
            self.position = max(self.position, position)
            self._advanced.notify_all()

    # --- for tests and operators ---------------------------------------------------------------

    async def wait_for(self, position: int, timeout: float = 10.0) -> None:
        """Return once everything up to ``position`` is applied (tests wait, never sleep)."""
        async with self._advanced:
            await asyncio.wait_for(
                self._advanced.wait_for(lambda: self.position >= position), timeout
            )

    async def catch_up(self, until: int | None = None, *, visible_only: bool = False) -> int:
        """Apply everything up to ``until`` (default: the last event committed when called),
        without subscribing. Used by rebuilds and tests. Events that committed but are not yet
        visible (an older transaction is still open) are waited for, not skipped — unless
        ``visible_only``: inside a transaction of one's own (a rebuild's switch-over) they can
        only become visible after it commits, so waiting would never end."""
        async with self.pool.acquire() as conn:
            await ensure_schema(conn, self.projection, self.schema)
            self.position = max(self.position, await read_checkpoint(conn, self.name))
        target = await self.store.head_position() if until is None else until

        def fetch(after: int) -> asyncio.Task[ReadAllPage]:
            return asyncio.create_task(
                self.store.read_all(
                    after,
                    categories=self.projection.categories,
                    types=self.projection.types,
                    limit=self.batch_size,
                )
            )

        # Read the next page while the current one is applied: the database does both at once.
        pending = fetch(self.position)
        try:
            while self.position < target:
                page = await pending
                if until is not None and page.last_position > target:  # nothing past until
                    page = ReadAllPage([e for e in page.events if e.position <= target], target)
                if not page.events and page.last_position <= self.position:
                    if visible_only:
                        break
                    await asyncio.sleep(0.005)  # the rest is behind the visibility horizon
                    pending = fetch(self.position)
                    continue
                pending = fetch(page.last_position)
                await self.process(page.events, page.last_position)
            return self.position
        finally:
            pending.cancel()


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel and wait until each task has really finished (a cancellation can be lost in
    library code; asking again is harmless)."""
    while pending := [t for t in tasks if not t.done()]:
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=1.0)
    for t in tasks:
        if not t.cancelled():
            t.exception()  # retrieved, so asyncio does not log it as never retrieved
