"""What a backend without transactions of its own (EventStoreDB, in-memory) offers of the port
on top of its own reads and appends: a unit of work whose appends commit one by one, and bulk
stream reads made of single ones."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from shared.eventstore.model import AppendResult, RecordedEvent, StreamAppend
from shared.eventstore.port import Direction


class DirectUnitOfWork:
    """The unit of work of a backend without transactions of its own (EventStoreDB, in-memory):
    each append is atomic by itself and there is no connection for other writes, so writes
    happen in the order they are made."""

    connection: Any = None

    def __init__(self, store: Any) -> None:
        self._store = store

    async def append_multi(self, appends: list[StreamAppend]) -> list[AppendResult]:
        results: list[AppendResult] = await self._store.append_multi(appends)
        return results


class WithoutTransactions:
    read_stream: Any  # provided by the backend

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[DirectUnitOfWork]:
        yield DirectUnitOfWork(self)

    async def read_streams(self, streams: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        found = {s: await self.read_stream(s) for s in set(streams)}
        return {s: events for s, events in found.items() if events}

    async def read_heads(self, streams: Sequence[str]) -> dict[str, RecordedEvent]:
        heads = {s: await self.read_stream(s, -1, Direction.BACKWARDS, 1) for s in set(streams)}
        return {s: last[0] for s, last in heads.items() if last}
