"""What verification, export and checkpoints ask of a backend (docs/architecture.md §2a).

PostgreSQL implements it (audit/postgres.py), the in-memory store too, for unit tests
(audit/memory.py). The EventStoreDB backend does not: it has neither a table of its own for
checkpoints nor a way to list every stream's head as of a position without reading the whole
log, so ``audit_log`` refuses it with ``CheckpointsUnsupported``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Any, Protocol

from shared.eventstore.audit.chains import Head, StoredEvent, tree_of_heads
from shared.eventstore.audit.checkpoints import Checkpoint, SigningKey
from shared.eventstore.model import EventStoreError


class CheckpointsUnsupported(EventStoreError):
    """The backend cannot keep checkpoints, export or prove (EventStoreDB)."""


class LogBehindCheckpoint(EventStoreError):
    """The log ends before the position the last checkpoint covered: its tail is gone."""

    def __init__(self, checkpoint: Checkpoint, final: int) -> None:
        self.checkpoint, self.final = checkpoint, final
        super().__init__(
            f"the log ends at position {final}, before checkpoint {checkpoint.number} "
            f"(position {checkpoint.position}): its tail was removed"
        )


class AuditLog(Protocol):
    async def final_position(self) -> int:
        """The last position that nothing can commit below any more (every event at or below it
        has committed; 0 for an empty log). Checkpoints and exports stop there."""
        ...

    def heads(self, as_of: int) -> AsyncGenerator[Head, None]:
        """Each stream's last event at or below ``as_of``, by stream name in code point order
        (PostgreSQL: ``COLLATE "C"``), streamed."""
        ...

    def events(self, first: int, last: int) -> AsyncGenerator[StoredEvent, None]:
        """The events with ``first <= position <= last``, in position order, streamed."""
        ...

    def chains(self, stream: str | None = None) -> AsyncGenerator[StoredEvent, None]:
        """Every event (or one stream's) by stream, then version: the chain checker's order."""
        ...

    def stream_tail(
        self, stream: str, from_version: int, as_of: int
    ) -> AsyncGenerator[StoredEvent, None]:
        """One stream's events from ``from_version`` on, at or below position ``as_of``."""
        ...

    async def stored_event(self, event_id: uuid.UUID) -> StoredEvent | None: ...

    async def event_at(self, position: int) -> StoredEvent | None: ...

    async def positions_between(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[int, int]:
        """The first position recorded at or after ``since`` and the last at or before ``until``
        (0 and the final position when not given): a time range as a range of positions."""
        ...

    async def create_checkpoint(self, key: SigningKey) -> Checkpoint | None:
        """Sign and store a checkpoint as of the final position, unless the log is empty or has
        not moved since the last one (then None). Serialised: concurrent callers never write
        two checkpoints with one number. Raises LogBehindCheckpoint when the log ends before
        the last checkpoint's position."""
        ...

    async def latest_checkpoint(self) -> Checkpoint | None: ...

    async def checkpoints(self, after: int = 0, limit: int | None = None) -> list[Checkpoint]:
        """The stored checkpoints numbered above ``after``, in order (the first ``limit``)."""
        ...

    async def close(self) -> None: ...


def audit_log(store: Any) -> AuditLog:
    """The audit side of an event store. Raises CheckpointsUnsupported for EventStoreDB."""
    from shared.eventstore.memory import InMemoryEventStore
    from shared.eventstore.postgres import PostgresEventStore

    if isinstance(store, PostgresEventStore):
        from shared.eventstore.audit.postgres import PostgresAuditLog

        return PostgresAuditLog(store.pool)
    if isinstance(store, InMemoryEventStore):
        from shared.eventstore.audit.memory import InMemoryAuditLog

        return InMemoryAuditLog(store)
    raise CheckpointsUnsupported(
        f"the {type(store).__name__} backend keeps no checkpoints and cannot export or prove: "
        "it has no table of its own and no way to list every stream's head as of a position "
        "(docs/architecture.md §2a); run checkpoints with EVENTSTORE_BACKEND=postgres"
    )


async def build_checkpoint(
    heads: AsyncIterator[Head],
    key: SigningKey,
    *,
    previous: Checkpoint | None,
    position: int,
    at: datetime,
) -> Checkpoint:
    """Sign the tree of ``heads`` (as of ``position``) as the checkpoint after ``previous``."""
    streams, root = await tree_of_heads(heads)
    return key.sign(
        number=1 if previous is None else previous.number + 1,
        position=position,
        at=at,
        streams=streams,
        root=root,
        previous=b"" if previous is None else previous.digest(),
    )
