"""A small projection for the runner's tests: non-idempotent counters, so a duplicate or lost
application shows as a wrong count. Run as a script, it follows the log until killed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import asyncpg

from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext


class SampleProjection:
    name = "sample"
    schema = "sample_rm"
    ddl = """
        CREATE TABLE counts (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL);
        CREATE TABLE effects (event_id uuid PRIMARY KEY);
    """
    categories: Sequence[str] | None = ["s"]
    types: Sequence[str] | None = None

    def __init__(self, poison: int | None = None, slow: float = 0.0) -> None:
        self.poison = poison
        self.slow = slow
        self.replayed: list[bool] = []

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        self.replayed.append(ctx.replay)
        for e in events:
            if self.poison is not None and e.data.get("n") == self.poison:
                raise ValueError(f"cannot apply n={self.poison}")
            await conn.execute(
                """INSERT INTO counts VALUES ($1, 1, $2) ON CONFLICT (stream_id) DO UPDATE
                   SET n = counts.n + 1, total = counts.total + excluded.total""",
                e.stream,
                int(e.data.get("n", 0)),
            )
            if not ctx.replay:  # a stand-in for a side effect
                await conn.execute("INSERT INTO effects VALUES ($1)", e.event_id)
        if self.slow:
            await asyncio.sleep(self.slow)


async def _main(dsn: str) -> None:
    from shared.eventstore.postgres import PostgresEventStore
    from shared.projections.runner import ProjectionRunner

    store = await PostgresEventStore.connect(dsn)
    runner = ProjectionRunner(store, SampleProjection(slow=0.05), batch_size=20)
    await runner.run()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
