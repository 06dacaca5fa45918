"""Rebuilds an operator asked for, as operations of the project role (not of the call that asked):
each runs as a task of the role (shared/projections/rebuild.py, ``live``), recorded in
projections.rebuilds with its progress every PERSIST_EVERY seconds, so any replica can report on
it and a caller that went away can follow it again. Asking for a rebuild that runs already
(here or on another replica) gives that one; asking after an interrupted one resumes it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import structlog

from shared.eventstore import EventStore
from shared.projections.leaders import here
from shared.projections.model import Projection
from shared.projections.rebuild import Progress, RebuildBusy, rebuild_into
from shared.projections.status import RebuildRecord, latest_rebuilds, rebuild_record

PERSIST_EVERY = 0.5  # seconds between progress writes of a running rebuild
FOLLOW_EVERY = 0.25  # seconds between looks of a caller following one
TERMINAL = ("done", "failed", "interrupted")
log = structlog.get_logger(__name__)


class Rebuilds:
    def __init__(self, store: EventStore, pool: asyncpg.Pool, dsn: str, batch_size: int) -> None:
        self.store, self.pool, self.dsn, self.batch_size = store, pool, dsn, batch_size
        self._tasks: dict[str, tuple[uuid.UUID, asyncio.Task[None]]] = {}

    async def start(self, projection: Projection, requested_by: str) -> uuid.UUID:
        """The operation rebuilding ``projection``: the one running, or a new one (which
        resumes an interrupted one's scratch read model)."""
        name = projection.name
        mine = self._tasks.get(name)
        if mine is not None and not mine[1].done():
            return mine[0]
        for _ in range(3):
            running = await self._running_elsewhere(name)
            if running is not None:
                return running
            operation = uuid.uuid4()
            started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._run(projection, operation, requested_by, started))
            self._tasks[name] = (operation, task)
            if await started:
                return operation
            await asyncio.sleep(0.2)  # another replica took the lock: its record follows
        raise RebuildBusy(name)

    async def _running_elsewhere(self, name: str) -> uuid.UUID | None:
        latest = (await latest_rebuilds(self.pool, [name])).get(name)
        return latest.operation_id if latest is not None and latest.state == "running" else None

    async def _run(
        self,
        projection: Projection,
        operation: uuid.UUID,
        requested_by: str,
        started: asyncio.Future[bool],
    ) -> None:
        latest: list[Progress] = []
        reported = asyncio.Event()

        def on_progress(p: Progress) -> None:
            latest[:] = [p]
            reported.set()

        work = asyncio.create_task(
            rebuild_into(
                self.store,
                self.pool,
                self.dsn,
                projection,
                projection.name,
                projection.schema,
                batch_size=self.batch_size,
                live=True,
                wait=False,
                progress=on_progress,
            )
        )
        first = asyncio.create_task(reported.wait())
        try:
            await asyncio.wait([work, first], return_when=asyncio.FIRST_COMPLETED)
            if not latest:  # ended before taking the lock: busy elsewhere, or failed at once
                first.cancel()
                if isinstance(work.exception(), RebuildBusy):
                    started.set_result(False)
                else:
                    started.set_exception(work.exception() or RuntimeError("rebuild ended"))
                return
            await self._insert(operation, projection.name, requested_by, latest[0])
            started.set_result(True)
            while not work.done():
                await asyncio.wait([work], timeout=PERSIST_EVERY)
                with contextlib.suppress(Exception):  # the database away: try again next time
                    await self._update(operation, latest[0], "running")
            work.result()
            await self._update(operation, latest[0], "done")
            log.info("projection.rebuilt", projection=projection.name, position=latest[0].position)
        except asyncio.CancelledError:  # the role is stopping: resumable, say so
            work.cancel()
            if not started.done():
                started.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._update(operation, latest[0], "interrupted"), 2)
            raise
        except Exception as exc:
            log.error("projection.rebuild_failed", projection=projection.name, exc_info=exc)
            if not work.done():  # our bookkeeping failed, not the rebuild: stop it too
                work.cancel()
            if not started.done():
                started.set_exception(exc)
            elif latest:
                error = f"{type(exc).__name__}: {exc}"[:2000]
                with contextlib.suppress(Exception):
                    await self._update(operation, latest[0], "failed", error)

    async def _insert(
        self, operation: uuid.UUID, name: str, requested_by: str, p: Progress
    ) -> None:
        host, pid = here()
        async with self.pool.acquire() as conn, conn.transaction():
            # We hold the lock: a row still "running" belongs to an attempt that died.
            await conn.execute(
                """UPDATE projections.rebuilds SET state = 'interrupted', finished_at = now()
                   WHERE name = $1 AND state = 'running'""",
                name,
            )
            await conn.execute(
                """INSERT INTO projections.rebuilds (operation_id, name, state, phase,
                       requested_by, host, pid, resumed_from, position, target, applied)
                   VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9, $10)""",
                operation,
                name,
                p.phase,
                requested_by,
                host,
                pid,
                p.resumed_from,
                p.position,
                p.target,
                p.applied,
            )

    async def _update(self, operation: uuid.UUID, p: Progress, state: str, error: str = "") -> None:
        await self.pool.execute(
            """UPDATE projections.rebuilds SET state = $2, phase = $3, position = $4,
                   target = $5, applied = $6, error = $7,
                   finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END
               WHERE operation_id = $1""",
            operation,
            state,
            p.phase,
            p.position,
            p.target,
            p.applied,
            error,
        )

    async def follow(self, operation: uuid.UUID) -> AsyncIterator[RebuildRecord]:
        """The operation's record each time it changes, until it has ended (from the database,
        so it does not matter which replica runs it)."""
        last: RebuildRecord | None = None
        missing = 0
        while True:
            record = await rebuild_record(self.pool, operation)
            if record is None:  # a rebuild of this process that has not recorded itself yet
                missing += 1
                if missing > 10 / FOLLOW_EVERY:
                    return
                await asyncio.sleep(FOLLOW_EVERY)
                continue
            if record != last:
                yield record
                last = record
            if record.state in TERMINAL:
                return
            await asyncio.sleep(FOLLOW_EVERY)

    async def close(self) -> None:
        """Stop the rebuilds this process runs (each records itself as interrupted)."""
        tasks = [task for _, task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
