"""The audit side of the in-memory store (audit/port.py), for unit tests: checkpoints kept in a
list, everything else read from the store's log. Every position is final at once (there are no
transactions in flight)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from shared.eventstore.audit.chains import Head, StoredEvent
from shared.eventstore.audit.checkpoints import Checkpoint, SigningKey
from shared.eventstore.audit.port import LogBehindCheckpoint, build_checkpoint
from shared.eventstore.memory import InMemoryEventStore, stored_text


class InMemoryAuditLog:
    def __init__(self, store: InMemoryEventStore) -> None:
        self._store = store
        self._checkpoints: list[Checkpoint] = []

    def _all(self) -> list[StoredEvent]:
        return [
            StoredEvent(
                e.position,
                e.event_id,
                e.stream,
                e.version,
                e.type,
                stored_text(e.data),
                stored_text(e.metadata),
                e.recorded_at,
                h,
            )
            for e, h in self._store.stored()
        ]

    async def final_position(self) -> int:
        return await self._store.head_position()

    async def heads(self, as_of: int) -> AsyncGenerator[Head, None]:
        last: dict[str, Head] = {}
        for e in self._all():
            if e.position <= as_of:
                last[e.stream] = Head.of(e)
        for name in sorted(last):
            yield last[name]

    async def events(self, first: int, last: int) -> AsyncGenerator[StoredEvent, None]:
        for e in self._all():
            if first <= e.position <= last:
                yield e

    async def chains(self, stream: str | None = None) -> AsyncGenerator[StoredEvent, None]:
        chosen = [e for e in self._all() if stream is None or e.stream == stream]
        for e in sorted(chosen, key=lambda e: (e.stream, e.version)):
            yield e

    async def stream_tail(
        self, stream: str, from_version: int, as_of: int
    ) -> AsyncGenerator[StoredEvent, None]:
        async for e in self.chains(stream):
            if e.version >= from_version and e.position <= as_of:
                yield e

    async def stored_event(self, event_id: uuid.UUID) -> StoredEvent | None:
        return next((e for e in self._all() if e.event_id == event_id), None)

    async def event_at(self, position: int) -> StoredEvent | None:
        return next((e for e in self._all() if e.position == position), None)

    async def positions_between(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[int, int]:
        final = await self.final_position()
        events = self._all()
        first = 0
        if since is not None:
            first = min((e.position for e in events if e.recorded_at >= since), default=final + 1)
        last = final
        if until is not None:
            last = max((e.position for e in events if e.recorded_at <= until), default=0)
        return first, last

    async def create_checkpoint(self, key: SigningKey) -> Checkpoint | None:
        previous = await self.latest_checkpoint()
        final = await self.final_position()
        if previous is not None and final < previous.position:
            raise LogBehindCheckpoint(previous, final)
        if final == 0 or (previous is not None and final == previous.position):
            return None
        checkpoint = await build_checkpoint(
            self.heads(final), key, previous=previous, position=final, at=datetime.now(UTC)
        )
        self._checkpoints.append(checkpoint)
        return checkpoint

    async def latest_checkpoint(self) -> Checkpoint | None:
        return self._checkpoints[-1] if self._checkpoints else None

    async def checkpoints(self, after: int = 0, limit: int | None = None) -> list[Checkpoint]:
        return [c for c in self._checkpoints if c.number > after][:limit]

    async def close(self) -> None:
        return None
