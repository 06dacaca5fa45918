"""One leader across replicas for a background worker (the notifications dispatcher, the
checkpoint writer): a PostgreSQL session advisory lock, held on a connection of its own for as
long as the worker runs (as projection runners lead). The others stand by; a leader whose lock
connection is lost stops, and its supervisor starts it again as a stand-by."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

log = structlog.get_logger(__name__)


async def led(
    dsn: str,
    key: str,
    run: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    *,
    standby_poll: float = 1.0,
) -> None:
    """Wait until this process holds the lock ``hashtext(key)``, then ``run(until)``; ``until``
    is set on ``stop`` or when the lock's connection is lost (then ``led`` raises, for the
    supervisor to start it again)."""
    lock_conn = await asyncpg.connect(dsn)
    try:
        while not await lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), standby_poll)
            if stop.is_set():
                return
        lost = asyncio.Event()
        until = asyncio.Event()
        lock_conn.add_termination_listener(lambda _c: lost.set())
        log.info("worker.leading", lock=key)

        async def watch() -> None:
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            until.set()

        watcher = asyncio.create_task(watch())
        try:
            await run(until)
        finally:
            watcher.cancel()
        if lost.is_set() and not stop.is_set():
            raise ConnectionError(f"{key}: the leader lock's connection was lost")
    finally:
        with contextlib.suppress(Exception):
            await lock_conn.close()
