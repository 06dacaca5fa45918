"""The projection baseline for segment_event_latency_p99_ms: the platform's ProjectionRunner in
a process of its own, following the same upstream categories as the membership engine, and
only recording each event in a table (no facts, no evaluation, no appends).

DATABASE_URL=... python -m bench.trivial_projector
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

import asyncpg
import uvloop

from services.segmentation.adapters.facts_writer import CATEGORIES
from shared.eventstore import RecordedEvent
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext
from shared.projections.runner import ProjectionRunner

NAME = "bench-trivial"
SCHEMA = "bench_trivial"
BATCH = 500  # shared/settings.py projection_batch_size, as the project role runs


class Recorder:
    name = NAME
    schema = SCHEMA
    ddl = """
    CREATE TABLE seen (
        position           bigint      PRIMARY KEY,
        event_id           uuid        NOT NULL,
        source_recorded_at timestamptz NOT NULL,
        seen_at            timestamptz NOT NULL DEFAULT now()
    );
    """
    categories: Sequence[str] | None = CATEGORIES
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        await conn.execute(
            """INSERT INTO seen (position, event_id, source_recorded_at)
               SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[])""",
            [e.position for e in events],
            [e.event_id for e in events],
            [e.recorded_at for e in events],
        )


async def main() -> None:
    store = await PostgresEventStore.connect(os.environ["DATABASE_URL"], min_size=2, max_size=4)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await ProjectionRunner(store, Recorder(), batch_size=BATCH).run(stop)
    finally:
        await store.close()


if __name__ == "__main__":
    uvloop.run(main())
