"""Events as stored, stream heads, the export's line format, and the chain checks every
verification shares (docs/architecture.md §2a). No I/O: callers feed it from the database or
from an export file.

The chain checker takes each stream's events in version order (a whole-log pass in stream
order, or an export in position order) and reports, per event: a hash that is not
``H(previous hash || content)`` (an altered event), a version that does not follow the previous
one (events missing), and a position that does not grow with the version (history re-ordered).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from shared.domain.timestamps import timestamp_from_text, timestamp_text
from shared.eventstore import hashing, merkle

EXPORT_FORMAT = "crm-export/1"  # the header of `crm events export` (audit/export.py)

# What a verification can find (Finding.kind).
ALTERED = "altered_event"  # an event's hash does not match its content and predecessor
MISSING = "missing_events"  # a stream skips versions (or starts after version 0)
REORDERED = "out_of_order"  # positions do not follow versions, or an export is out of order
ROOT_MISMATCH = "checkpoint_mismatch"  # the heads as of a checkpoint give another root or count
TRUNCATED = "truncated"  # the log (or an export) ends before what a checkpoint covered
FORGED = "forged_checkpoint"  # a signature that does not verify, or an untrusted key
SEQUENCE = "checkpoint_sequence"  # checkpoints missing, re-linked or going backwards
MALFORMED = "malformed"  # a line or file that is not what it claims to be


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    message: str
    stream: str | None = None
    version: int | None = None
    position: int | None = None
    checkpoint: int | None = None

    def to_json(self) -> dict[str, Any]:
        names = ("kind", "message", "stream", "version", "position", "checkpoint")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class StoredEvent(NamedTuple):
    """An event exactly as stored: data and metadata as the JSON text the hash covers."""

    position: int
    event_id: uuid.UUID
    stream: str
    version: int
    type: str
    data: str
    metadata: str
    recorded_at: datetime
    hash: bytes

    def expected_hash(self, prev: bytes) -> bytes:
        return hashing.event_hash(
            prev,
            self.event_id,
            self.stream,
            self.version,
            self.type,
            self.data,
            self.metadata,
            self.recorded_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "event",
            "position": self.position,
            "event_id": str(self.event_id),
            "stream": self.stream,
            "version": self.version,
            "type": self.type,
            "recorded_at": timestamp_text(self.recorded_at),
            "data": self.data,
            "metadata": self.metadata,
            "hash": self.hash.hex(),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> StoredEvent:
        """Raises ValueError (KeyError, TypeError) for a line that is not an event."""
        return cls(
            position=_int(body["position"]),
            event_id=uuid.UUID(body["event_id"]),
            stream=_text(body["stream"]),
            version=_int(body["version"]),
            type=_text(body["type"]),
            data=_text(body["data"]),
            metadata=_text(body["metadata"]),
            recorded_at=timestamp_from_text(body["recorded_at"]),
            hash=bytes.fromhex(body["hash"]),
        )


class Head(NamedTuple):
    """A stream's last event as of some position: one leaf of a checkpoint's tree."""

    stream: str
    version: int
    position: int
    hash: bytes

    def leaf(self) -> bytes:
        return merkle.leaf_hash(merkle.encode_leaf(*self))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "head",
            "stream": self.stream,
            "version": self.version,
            "position": self.position,
            "hash": self.hash.hex(),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Head:
        return cls(
            _text(body["stream"]),
            _int(body["version"]),
            _int(body["position"]),
            bytes.fromhex(body["hash"]),
        )

    @classmethod
    def of(cls, event: StoredEvent) -> Head:
        return cls(event.stream, event.version, event.position, event.hash)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected an integer >= 0, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


@dataclass
class Findings:
    """Findings up to a limit (a log broken everywhere must not fill the memory); the rest are
    counted."""

    limit: int = 1000
    items: list[Finding] = field(default_factory=list)
    more: int = 0

    def add(self, finding: Finding) -> None:
        if len(self.items) < self.limit:
            self.items.append(finding)
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items) + self.more


class ChainChecker:
    """Feed each stream's events in version order; ``heads`` holds each stream's last event
    (``forget`` one to keep a whole-log pass in stream order small)."""

    def __init__(self, findings: Findings) -> None:
        self.findings = findings
        self.heads: dict[str, Head] = {}
        self.events = 0
        self.streams = 0

    def seed(self, head: Head) -> None:
        """A stream's head before the first event fed (an export that starts mid-log)."""
        self.heads[head.stream] = head
        self.streams += 1

    def forget(self, stream: str) -> None:
        self.heads.pop(stream, None)

    def feed(self, e: StoredEvent) -> None:
        self.events += 1
        last = self.heads.get(e.stream)
        if last is None:
            self.streams += 1
            prev = b""
            if e.version != 0:
                self._found(MISSING, e, f"the stream starts at version {e.version}, not 0")
        else:
            prev = last.hash
            if e.version != last.version + 1:
                kind = MISSING if e.version > last.version + 1 else REORDERED
                self._found(kind, e, f"version {e.version} follows version {last.version}")
            if e.position <= last.position:
                self._found(
                    REORDERED,
                    e,
                    f"version {e.version} is at position {e.position}, before version "
                    f"{last.version} at position {last.position}",
                )
        if e.expected_hash(prev) != e.hash:
            self._found(ALTERED, e, "the hash does not match the content and the chain")
        self.heads[e.stream] = Head.of(e)

    def _found(self, kind: str, e: StoredEvent, message: str) -> None:
        self.findings.add(Finding(kind, message, e.stream, e.version, e.position))


def tree_of(heads: dict[str, Head]) -> tuple[int, bytes]:
    """(leaves, root) of heads held in memory (an offline verification)."""
    builder = merkle.RootBuilder()
    for name in sorted(heads):
        builder.add(heads[name].leaf())
    return builder.count, builder.root()


async def tree_of_heads(heads: AsyncIterator[Head]) -> tuple[int, bytes]:
    """(leaves, root) of heads streamed by name (audit/port.py ``heads``), in constant memory.
    Raises RuntimeError when they do not come in strictly increasing name order."""
    builder = merkle.RootBuilder()
    last: str | None = None
    async for head in heads:
        if last is not None and head.stream <= last:
            raise RuntimeError(f"stream heads out of order: {head.stream!r} after {last!r}")
        last = head.stream
        builder.add(head.leaf())
    return builder.count, builder.root()
