"""Value types of the event store contract (docs/architecture.md §2). No I/O here."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


class StreamState(enum.Enum):
    """Expected-version sentinels; an ``int`` means "the stream's last version is exactly this"."""

    NO_STREAM = -1  # the stream must not exist yet
    ANY = -2  # no check
    EXISTS = -4  # the stream must have at least one event


ExpectedVersion = int | StreamState

# Positions are sparse and strictly increasing in visibility order: the writing transaction's
# 64-bit id shifted left by POSITION_TX_BITS, plus the event's index within that transaction.
POSITION_TX_BITS = 20
MAX_EVENTS_PER_TRANSACTION = 1 << POSITION_TX_BITS


def category_of(stream: str) -> str:
    """The stream's category: the part before the first '-' (``contact-123`` -> ``contact``)."""
    return stream.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


class RecordedEvent(NamedTuple):
    """An event as stored. A NamedTuple, not a frozen dataclass: readers build hundreds of
    thousands per second, and a tuple is several times cheaper to construct."""

    event_id: uuid.UUID
    stream: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    position: int

    @property
    def category(self) -> str:
        return category_of(self.stream)


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream: str
    version: int  # version of the last event written (or found, for an idempotent retry)
    position: int  # global position of the last event
    idempotent: bool = False  # True when every event id was already stored: nothing was written
    recorded_at: datetime | None = None  # when the (last) event was recorded


@dataclass(frozen=True, slots=True)
class StreamAppend:
    stream: str
    events: list[NewEvent]
    expected_version: ExpectedVersion


@dataclass(frozen=True, slots=True)
class ReadAllPage:
    events: list[RecordedEvent]
    # Every event at or below this position has been scanned (matching the filter or not), so a
    # reader may resume after it. -1 when nothing is visible yet.
    last_position: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a reader at some position has not read yet: how many matching events (counted up to
    a cap) and when the oldest of them was recorded (None when there is none)."""

    count: int
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    streams: int
    events: int
    broken: list[tuple[str, int]]  # (stream, version) of every event whose hash does not match

    @property
    def ok(self) -> bool:
        return not self.broken


class EventStoreError(Exception):
    """Base class of the store's typed errors."""


class WrongExpectedVersion(EventStoreError):
    def __init__(self, stream: str, expected: ExpectedVersion, actual: int) -> None:
        self.stream, self.expected, self.actual = stream, expected, actual
        exp = expected.name if isinstance(expected, StreamState) else expected
        super().__init__(f"stream {stream!r}: expected version {exp}, actual {actual}")


class DuplicateEventId(EventStoreError):
    """An event id is already stored with different content (or in another stream)."""
