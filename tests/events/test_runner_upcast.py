"""The projection runner hands projections upcast events, live and in a rebuild, while the store
keeps the stored shape (and its hash chain) untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from shared.eventstore import NewEvent, RecordedEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext
from shared.projections.rebuild import rebuild
from shared.projections.runner import ProjectionRunner
from tests.events.sample_messages import SAMPLED

OLD = {"sample_id": "s1", "happened_at": "2026-12-02T20:59:37+01:00", "name": "first"}
NEW = {"sample_id": "s1", "happen_time": "2026-12-02T19:59:37Z", "label": "first"}


class Seen:
    name, schema, ddl = "seen", "seen_rm", "CREATE TABLE nothing (x int)"
    categories: Sequence[str] | None = ("sample",)
    types: Sequence[str] | None = None

    def __init__(self) -> None:
        self.data: list[tuple[bool, dict[str, Any]]] = []

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        self.data.extend((ctx.replay, e.data) for e in events)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=4)
    yield s
    await s.close()


async def test_projections_see_the_current_shape_and_the_store_keeps_the_stored_one(
    store: PostgresEventStore,
) -> None:
    await store.append("sample-s1", [NewEvent(SAMPLED, dict(OLD))], StreamState.NO_STREAM)
    await store.append("sample-s1", [NewEvent(SAMPLED, dict(NEW))], StreamState.EXISTS)
    seen = Seen()
    await ProjectionRunner(store, seen).catch_up()
    assert seen.data == [(False, NEW), (False, NEW)]

    await rebuild(store, seen)
    assert seen.data[2:] == [(True, NEW), (True, NEW)]

    stored = await store.read_stream("sample-s1")
    assert [e.data for e in stored] == [OLD, NEW]
    assert (await store.verify()).ok
