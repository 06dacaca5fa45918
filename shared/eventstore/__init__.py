"""The event store: one contract (port.py), a PostgreSQL backend and an EventStoreDB backend."""

from shared.eventstore.model import (
    AppendResult,
    Backlog,
    DuplicateEventId,
    EventStoreError,
    ExpectedVersion,
    NewEvent,
    ReadAllPage,
    RecordedEvent,
    StreamAppend,
    StreamState,
    VerifyReport,
    WrongExpectedVersion,
    category_of,
)
from shared.eventstore.port import Direction, EventStore

__all__ = [
    "AppendResult",
    "Backlog",
    "Direction",
    "DuplicateEventId",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "NewEvent",
    "ReadAllPage",
    "RecordedEvent",
    "StreamAppend",
    "StreamState",
    "VerifyReport",
    "WrongExpectedVersion",
    "category_of",
]
