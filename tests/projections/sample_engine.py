"""A small engine for the rebuild tests: like segmentation's membership engine, it appends
events of its own in its batch's transaction (an "echo" for each counted event) and keeps a
table of them that it writes directly when live and folds from the echoes only in replay."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.eventstore import NewEvent, RecordedEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext

ECHO = "t.v1.Echoed"


class SampleEngine:
    name = "sample-engine"
    schema = "sample_engine"
    ddl = """
        CREATE TABLE counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
        CREATE TABLE echoes (event_id uuid PRIMARY KEY);
    """
    categories: Sequence[str] | None = ["s", "echo"]
    types: Sequence[str] | None = None
    replay_only_types: Sequence[str] = (ECHO,)

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        appends = []
        for e in events:
            if e.type == ECHO:
                if ctx.replay:
                    await conn.execute("INSERT INTO echoes VALUES ($1)", uuid.UUID(e.data["of"]))
                continue
            await conn.execute(
                """INSERT INTO counts VALUES ($1, 1)
                   ON CONFLICT (stream_id) DO UPDATE SET n = counts.n + 1""",
                e.stream,
            )
            if not ctx.replay:
                await conn.execute("INSERT INTO echoes VALUES ($1)", e.event_id)
                echo = NewEvent(
                    ECHO, {"of": str(e.event_id)}, event_id=uuid.uuid5(e.event_id, "echo")
                )
                appends.append(StreamAppend(f"echo-{e.event_id}", [echo], StreamState.NO_STREAM))
        if appends:
            await self.store.append_batch_on(conn, appends)
