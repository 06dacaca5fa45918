"""A read model that fails on "poison" events until an operator has fixed what it needs (a row
in its `fixed` table): parked by the runner, then retried or skipped through the Admin API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from shared import runtime
from shared.eventstore import NewEvent, RecordedEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext
from shared.settings import Settings


class Flaky:
    name = "flaky"
    schema = "flaky_rm"
    ddl = """
        CREATE TABLE applied (event_id uuid PRIMARY KEY, n int NOT NULL, live bool NOT NULL);
        CREATE TABLE fixed (n int PRIMARY KEY);
    """
    categories: Sequence[str] | None = ["flaky"]
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            n = int(e.data["n"])
            if e.data.get("poison") and not await conn.fetchval(
                "SELECT true FROM fixed WHERE n = $1", n
            ):
                raise ValueError(f"cannot apply {n}: not fixed")
            await conn.execute(
                "INSERT INTO applied VALUES ($1, $2, $3)", e.event_id, n, not ctx.replay
            )


def work(rt: runtime.Runtime, settings: Any, stop: asyncio.Event) -> runtime.Work:
    return runtime.Work([Flaky()])


async def connect(settings: Settings) -> runtime.Runtime:
    return await runtime.connect(settings, projections=[Flaky()])


async def role(settings: Settings, stop: asyncio.Event) -> None:
    """A project role running the flaky read model, as a service's runs its own."""
    await runtime.project(settings, stop, connect, work, service="flaky")


async def append(store: PostgresEventStore, n: int, *, poison: bool = False) -> uuid.UUID:
    event = NewEvent("t.v1.Flaked", {"n": n, "poison": poison})
    await store.append(f"flaky-{n}", [event], StreamState.ANY)
    return event.event_id
