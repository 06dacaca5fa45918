"""asyncpg pools with retries: a service that starts before its database waits for it."""

from __future__ import annotations

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

_TRANSIENT = (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


async def connect_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, wait_seconds: float = 30.0
) -> asyncpg.Pool:
    """Open a pool, retrying while the server is starting or restarting."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(_TRANSIENT),
        stop=stop_after_delay(wait_seconds),
        wait=wait_exponential(multiplier=0.05, max=2),
        reraise=True,
    ):
        with attempt:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, command_timeout=60
            )
    assert pool is not None
    return pool
