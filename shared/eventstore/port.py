"""The event store port: what services and projections may ask of any backend."""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from shared.eventstore.model import (
    AppendResult,
    Backlog,
    ExpectedVersion,
    NewEvent,
    ReadAllPage,
    RecordedEvent,
    StreamAppend,
    VerifyReport,
)


class Direction(enum.Enum):
    FORWARDS = "forwards"
    BACKWARDS = "backwards"


class UnitOfWork(Protocol):
    """Appends and other writes that commit together (see ``EventStore.transaction``)."""

    # The PostgreSQL connection of the transaction, for writes of one's own (keys, rows);
    # None on a backend without transactions, where such writes go through their own pool.
    connection: Any

    async def append_multi(self, appends: list[StreamAppend]) -> list[AppendResult]: ...


class EventStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A unit of work: on PostgreSQL its appends and the writes made through its
        ``connection`` commit in one transaction, and subscribers are woken after the commit;
        on other backends each append commits by itself, in call order."""
        ...

    async def read_streams(self, streams: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        """Several whole streams at once (bulk work: imports)."""
        ...

    async def read_heads(self, streams: Sequence[str]) -> dict[str, RecordedEvent]:
        """The last event of each stream that has one."""
        ...

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Append atomically; raise WrongExpectedVersion on conflict. Re-appending events whose
        ids are stored with the same content succeeds and writes nothing."""
        ...

    async def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Several streams in one atomic write (where the backend supports it)."""
        ...

    async def read_stream(
        self,
        stream: str,
        from_version: int = 0,
        direction: Direction = Direction.FORWARDS,
        limit: int | None = None,
    ) -> list[RecordedEvent]: ...

    async def read_all(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> ReadAllPage:
        """Events with position > ``after`` in position order; never skips one that commits
        later."""
        ...

    def subscribe(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 1000,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[ReadAllPage]:
        """Catch up, then go live; yields pages (possibly with no events but a later
        ``last_position``). At-least-once: resume from your own checkpoint. ``idle_timeout``
        bounds how long a live reader waits before looking again without being woken."""
        ...

    async def backlog(
        self,
        after: int,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        cap: int = 1_000_000,
    ) -> Backlog:
        """The matching events after ``after`` (committed, visible or not): their count up to
        ``cap`` and the oldest one's time. Projection lag is measured with it."""
        ...

    async def get_event(self, event_id: uuid.UUID) -> RecordedEvent | None: ...

    async def stream_version(self, stream: str) -> int:
        """Last version of the stream, -1 if it has no events."""
        ...

    async def head_position(self) -> int: ...

    async def verify(self, stream: str | None = None) -> VerifyReport:
        """Recompute the per-stream hash chain of one stream or of the whole log."""
        ...

    async def close(self) -> None: ...
