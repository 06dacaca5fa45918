"""asyncpg pools with retries: a service that starts before its database waits for it."""

from __future__ import annotations

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

_TRANSIENT = (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: it costs a round trip per acquire, which halves the
    append rate. Our code leaves no session state on pooled connections (advisory locks and
    LISTEN use dedicated connections; settings are transaction-local)."""
    if conn.is_in_transaction():  # a cancelled task may leave one open
        await conn.execute("ROLLBACK")


async def connect_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    wait_seconds: float = 30.0,
    statement_timeout: float = 0.0,
) -> asyncpg.Pool:
    """Open a pool, retrying while the server is starting or restarting. ``statement_timeout``
    (seconds, 0 = none) makes the server cancel any longer statement of these connections."""
    settings = {"statement_timeout": f"{int(statement_timeout * 1000)}ms"}
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(_TRANSIENT),
        stop=stop_after_delay(wait_seconds),
        wait=wait_exponential(multiplier=0.05, max=2),
        reraise=True,
    ):
        with attempt:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=60,
                reset=_no_reset,
                server_settings=settings if statement_timeout > 0 else None,
            )
    assert pool is not None
    return pool
