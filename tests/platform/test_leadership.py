"""One leader across replicas for a worker (shared/leadership.py): the others stand by; a
leader whose lock connection dies stops with an error and a stand-by takes over."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from shared.leadership import led

pytestmark = pytest.mark.timeout(60)
KEY = "worker:test-leadership"


async def test_one_runs_the_other_stands_by_and_takes_over_when_the_lock_is_lost(
    dsn: str,
) -> None:
    running: list[str] = []

    def worker(name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
        async def run(until: asyncio.Event) -> None:
            running.append(name)
            await until.wait()

        return run

    stop = asyncio.Event()
    first = asyncio.create_task(led(dsn, KEY, worker("a"), stop, standby_poll=0.05))
    while running != ["a"]:
        await asyncio.sleep(0.01)
    second = asyncio.create_task(led(dsn, KEY, worker("b"), stop, standby_poll=0.05))
    await asyncio.sleep(0.3)
    assert running == ["a"]  # b stands by

    conn = await asyncpg.connect(dsn)
    try:  # the leader's lock session dies (a database restart, a network cut)
        await conn.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objid = (hashtext($1)::bigint & 4294967295)""",
            KEY,
        )
    finally:
        await conn.close()
    with pytest.raises(ConnectionError):
        await first
    while running != ["a", "b"]:
        await asyncio.sleep(0.01)
    stop.set()
    await second  # a stop is a clean end


async def test_a_stand_by_returns_on_stop(dsn: str) -> None:
    stop, hold = asyncio.Event(), asyncio.Event()

    async def run(until: asyncio.Event) -> None:
        await hold.wait()

    leader = asyncio.create_task(led(dsn, KEY, run, asyncio.Event(), standby_poll=0.05))
    await asyncio.sleep(0.2)
    standby = asyncio.create_task(led(dsn, KEY, run, stop, standby_poll=0.05))
    await asyncio.sleep(0.2)
    stop.set()
    await standby
    hold.set()
    await leader
