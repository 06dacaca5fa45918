"""Where a projection stands: its row in projections.checkpoints, read, locked and moved in
the transaction of the read model's writes for a batch (runner.py), and waited for."""

from __future__ import annotations

import asyncio
import time

import asyncpg


async def read_checkpoint(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> int:
    v = await conn.fetchval("SELECT position FROM projections.checkpoints WHERE name = $1", name)
    return int(v or 0)


async def lock_checkpoint(conn: asyncpg.Connection, name: str) -> int:
    """The checkpoint, its row locked until the transaction ends (0 when there is none yet).
    Locking it serialises a runner's batch with a rebuild's switch-over, which may move the
    checkpoint forward under it."""
    v = await conn.fetchval(
        "SELECT position FROM projections.checkpoints WHERE name = $1 FOR UPDATE", name
    )
    return int(v or 0)


async def move_checkpoint(conn: asyncpg.Connection, name: str, position: int) -> None:
    """Move the checkpoint to ``position`` (never back)."""
    await conn.execute(
        """INSERT INTO projections.checkpoints (name, position) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET position = greatest(
               projections.checkpoints.position, excluded.position), updated_at = now()""",
        name,
        position,
    )


async def wait_for_checkpoint(
    pool: asyncpg.Pool, name: str, position: int, timeout: float = 10.0
) -> None:
    """Wait until a projection run by another process has committed ``position``."""
    deadline = time.monotonic() + timeout
    while True:
        v = await pool.fetchval(
            "SELECT position FROM projections.checkpoints WHERE name = $1", name
        )
        if (v or 0) >= position:  # no checkpoint yet: nothing applied, which covers 0
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"projection {name} at {v}, wanted {position}")
        await asyncio.sleep(0.01)
