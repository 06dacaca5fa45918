"""What a projection is: a named, versioned fold of events into tables of one schema."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from shared.eventstore import RecordedEvent


@dataclass(frozen=True, slots=True)
class ApplyContext:
    # True while rebuilding or replaying history: a projection must cause no side effects then
    # (no messages, no commands), only read-model writes.
    replay: bool
    # Called once the batch's transaction committed (e.g. waking readers of events a projection
    # appended on its connection); never when it rolled back.
    after_commit: list[Callable[[], None]] = field(default_factory=list)


class Projection(Protocol):
    name: str  # stable; the checkpoint and the advisory lock are keyed by it
    schema: str  # the read model's schema; the runner sets search_path to it for apply()
    ddl: str  # CREATE statements with unqualified names, run in a new (or rebuilt) schema
    categories: Sequence[str] | None  # event filter; None = every category
    types: Sequence[str] | None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        """Write the effect of ``events`` (in position order) inside the caller's transaction."""
        ...


def replay_only(projection: Projection) -> Sequence[str]:
    """The event types a projection folds into its own tables only in replay, declared as an
    optional ``replay_only_types`` attribute: the events it appends itself (an engine's
    membership events: docs/architecture.md §3), which its live run writes as it decides them
    and does not read back (live_types). A rebuild that stops at the live checkpoint
    still folds those that lie beyond it (rebuild.py): they answer events at or below it."""
    return tuple(getattr(projection, "replay_only_types", ()) or ())


def live_types(projection: Projection) -> Sequence[str] | None:
    """The event types a projection reads when it follows the log live: all of its ``types``
    but its optional ``replay_only_types`` (e.g. the events an engine appended itself, which it
    needs only to rebuild its tables)."""
    skip = set(replay_only(projection))
    if projection.types is None or not skip:
        return projection.types
    return [t for t in projection.types if t not in skip]
