"""An event store in memory, for fast application tests with fakes (no database, no I/O).

It keeps the contract of the port (tests/eventstore/test_contract.py runs on it): expected
versions, idempotency by event id with content comparison, atomic multi-stream appends (one
process, no awaits inside an append), positions in commit order, filtered reads, catch-up then
live subscriptions and the per-stream hash chain. What only a database can promise — surviving
the process, other processes reading the same log — it does not pretend to.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import orjson

from shared.eventstore import hashing
from shared.eventstore.model import (
    AppendResult,
    Backlog,
    DuplicateEventId,
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
from shared.eventstore.port import Direction
from shared.eventstore.without_transactions import WithoutTransactions


def stored_text(value: object) -> str:
    """The JSON text the memory store hashes data and metadata as (PostgreSQL: jsonb's text)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class InMemoryEventStore(WithoutTransactions):
    def __init__(self) -> None:
        self._log: list[RecordedEvent] = []  # position order; position = index + 1
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._hashes: dict[tuple[str, int], bytes] = {}
        self._changed = asyncio.Condition()

    # --- writing ---------------------------------------------------------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        return (await self.append_multi([StreamAppend(stream, list(events), expected_version)]))[0]

    async def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """All or nothing: every check runs before anything is written."""
        results: list[AppendResult | None] = []
        for a in appends:
            results.append(self._already_stored(a))
        for a, done in zip(appends, results, strict=True):
            if done is None:
                self._check_version(a.stream, a.expected_version)
        at = datetime.now(UTC)
        out = [done or self._write(a, at) for a, done in zip(appends, results, strict=True)]
        if any(not r.idempotent for r in out):
            async with self._changed:
                self._changed.notify_all()
        return out

    def _already_stored(self, a: StreamAppend) -> AppendResult | None:
        found = [self._by_id.get(e.event_id) for e in a.events]
        if not any(found):
            return None
        same = all(
            f is not None and f.stream == a.stream and f.type == e.type and f.data == e.data
            for f, e in zip(found, a.events, strict=True)
        )
        if not same:
            raise DuplicateEventId("event id already stored with other content")
        last = max((f for f in found if f is not None), key=lambda f: f.position)
        return AppendResult(a.stream, last.version, last.position, True, last.recorded_at)

    def _check_version(self, stream: str, expected: ExpectedVersion) -> None:
        actual = len(self._streams.get(stream, ())) - 1
        ok = (
            expected is StreamState.ANY
            or (expected is StreamState.NO_STREAM and actual == -1)
            or (expected is StreamState.EXISTS and actual >= 0)
            or (isinstance(expected, int) and expected == actual)
        )
        if not ok:
            raise WrongExpectedVersion(stream, expected, actual)

    def _write(self, a: StreamAppend, at: datetime) -> AppendResult:
        stream = self._streams.setdefault(a.stream, [])
        for e in a.events:
            version = len(stream)
            recorded = RecordedEvent(  # stored as JSON would be: a copy, JSON types only
                e.event_id,
                a.stream,
                version,
                e.type,
                orjson.loads(orjson.dumps(e.data)),
                orjson.loads(orjson.dumps(e.metadata)),
                at,
                len(self._log) + 1,
            )
            prev = self._hashes.get((a.stream, version - 1), b"")
            self._hashes[(a.stream, version)] = self._hash(prev, recorded)
            stream.append(recorded)
            self._log.append(recorded)
            self._by_id[e.event_id] = recorded
        last = stream[-1]
        return AppendResult(a.stream, last.version, last.position, False, at)

    @staticmethod
    def _hash(prev: bytes, e: RecordedEvent) -> bytes:
        return hashing.event_hash(
            prev,
            e.event_id,
            e.stream,
            e.version,
            e.type,
            stored_text(e.data),
            stored_text(e.metadata),
            e.recorded_at,
        )

    def stored(self) -> list[tuple[RecordedEvent, bytes]]:
        """Every event in position order with its chain hash (audit/memory.py reads them)."""
        return [(e, self._hashes[(e.stream, e.version)]) for e in self._log]

    # --- reading ---------------------------------------------------------------------------

    async def read_stream(
        self,
        stream: str,
        from_version: int = 0,
        direction: Direction = Direction.FORWARDS,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        events = self._streams.get(stream, [])
        if direction is Direction.FORWARDS:
            chosen = [e for e in events if e.version >= from_version]
        else:
            top = len(events) - 1 if from_version < 0 else from_version
            chosen = [e for e in reversed(events) if e.version <= top]
        return chosen if limit is None else chosen[:limit]

    async def read_all(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> ReadAllPage:
        out: list[RecordedEvent] = []
        for e in self._log[max(after, 0) :]:
            if _wanted(e, categories, types):
                out.append(e)
                if len(out) == limit:
                    return ReadAllPage(out, e.position)
        return ReadAllPage(out, max(after, len(self._log)))

    async def backlog(
        self,
        after: int,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        cap: int = 1_000_000,
    ) -> Backlog:
        pending = [e for e in self._log[max(after, 0) :] if _wanted(e, categories, types)]
        return Backlog(min(len(pending), cap), pending[0].recorded_at if pending else None)

    async def subscribe(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 1000,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[ReadAllPage]:
        position = after
        while True:
            page = await self.read_all(
                position, categories=categories, types=types, limit=batch_size
            )
            if page.events or page.last_position > position:
                position = page.last_position
                yield page
                continue
            async with self._changed:
                if len(self._log) <= position:
                    await self._changed.wait()

    async def get_event(self, event_id: uuid.UUID) -> RecordedEvent | None:
        return self._by_id.get(event_id)

    async def stream_version(self, stream: str) -> int:
        return len(self._streams.get(stream, ())) - 1

    async def head_position(self) -> int:
        return len(self._log)

    async def verify(self, stream: str | None = None) -> VerifyReport:
        names = [stream] if stream is not None else sorted(self._streams)
        broken: list[tuple[str, int]] = []
        count = 0
        for name in names:
            prev = b""
            for e in self._streams.get(name, []):
                count += 1
                stored = self._hashes[(name, e.version)]
                if stored != self._hash(prev, e):
                    broken.append((name, e.version))
                prev = stored
        streams = sum(1 for n in names if n in self._streams)
        return VerifyReport(streams=streams, events=count, broken=broken)

    async def close(self) -> None:
        return None


def _wanted(
    e: RecordedEvent, categories: Sequence[str] | None, types: Sequence[str] | None
) -> bool:
    return (categories is None or category_of(e.stream) in categories) and (
        types is None or e.type in types
    )
