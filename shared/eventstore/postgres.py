"""The PostgreSQL event store (asyncpg). See migrations/0001_events.sql for the design."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from shared.db import migrate
from shared.db.errors import transient
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
from shared.metrics import APPEND_SECONDS, EVENTS_APPENDED

MIGRATIONS = Path(__file__).parent / "migrations"
CHANNEL = "crm_events"
NOTIFY_WINDOW = 0.002  # seconds; bounds the extra latency for subscribers in other processes
_COLUMNS = "position, event_id, stream_id, version, type, data::text, metadata::text, recorded_at"
# Only positions below this bound are visible: every transaction with a smaller id has ended.
_HORIZON = "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)"
_APPEND = (
    "SELECT o_version, o_position, o_recorded_at FROM eventstore.append($1, $2, $3, $4, $5, $6)"
)
# The common case, one event outside any caller's transaction, as one plain statement: no
# plpgsql call, no set-returning function. Its transaction holds only this event, so its index
# within the transaction is 0. No row back means the expected version did not hold.
_APPEND_ONE = """
WITH head AS MATERIALIZED (
    SELECT coalesce(h.version, -1) AS v, coalesce(h.hash, ''::bytea) AS h
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT e.version, e.hash FROM eventstore.events e
                       WHERE e.stream_id = $1 ORDER BY e.version DESC LIMIT 1) h ON true
)
INSERT INTO eventstore.events
    (position, event_id, stream_id, category, version, type, data, metadata, recorded_at, hash)
SELECT pg_current_xact_id()::text::bigint << 20, $3, $1, split_part($1, '-', 1), head.v + 1,
       $4, $5::jsonb, $6::jsonb, now(),
       eventstore.event_hash(head.h, $3, $1, head.v + 1, $4, $5::jsonb, $6::jsonb, now())
FROM head
WHERE CASE WHEN $2::bigint >= 0 THEN head.v = $2::bigint WHEN $2::bigint = -1 THEN head.v = -1
           WHEN $2::bigint = -4 THEN head.v >= 0 ELSE true END
RETURNING version, position, recorded_at
"""
_BATCH = (
    "SELECT o_stream, o_version, o_position, o_recorded_at"
    " FROM eventstore.append_batch($1, $2, $3, $4, $5, $6)"
)
_EXISTING = "SELECT o_version, o_position, o_recorded_at FROM eventstore.existing($1, $2, $3, $4)"


def _expected_code(expected: ExpectedVersion) -> int:
    if isinstance(expected, StreamState):
        return expected.value
    if expected < 0:
        raise ValueError(f"expected version must be >= 0 or a StreamState, got {expected}")
    return expected


class WrongVersionSignal(asyncpg.PostgresError):
    """The append function's CR001 error (asyncpg builds a subclass per SQLSTATE it is told)."""

    sqlstate = "CR001"


def _append_args(
    stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
) -> tuple[Any, ...]:
    if not events:
        raise ValueError("append needs at least one event")
    return (
        stream,
        _expected_code(expected),
        [e.event_id for e in events],
        [e.type for e in events],
        [orjson.dumps(e.data).decode() for e in events],
        [orjson.dumps(e.metadata).decode() for e in events],
    )


def _batch_args(appends: Sequence[StreamAppend]) -> tuple[list[Any], ...]:
    """Per-event arrays for eventstore.append_batch (each stream's events contiguous)."""
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
    streams, expected, ids, types, data, meta = cols
    dumps = orjson.dumps
    for a in appends:
        if not a.events:
            raise ValueError(f"append to {a.stream} needs at least one event")
        code = _expected_code(a.expected_version)
        for e in a.events:
            streams.append(a.stream)
            expected.append(code)
            ids.append(e.event_id)
            types.append(e.type)
            data.append(dumps(e.data).decode())
            meta.append(dumps(e.metadata).decode())
    return cols


def _batch_results(
    appends: Sequence[StreamAppend], rows: list[asyncpg.Record]
) -> list[AppendResult]:
    last: dict[str, asyncpg.Record] = {}
    for r in rows:
        if r[0] not in last or r[1] > last[r[0]][1]:
            last[r[0]] = r
    return [
        AppendResult(a.stream, last[a.stream][1], last[a.stream][2], False, last[a.stream][3])
        for a in appends
    ]


def _translate(exc: Exception, stream: str, expected: ExpectedVersion | None) -> Exception:
    code = getattr(exc, "sqlstate", None)
    expected = StreamState.ANY if expected is None else expected
    if code == "CR001":
        return WrongExpectedVersion(stream, expected, int(getattr(exc, "detail", None) or -1))
    if code == "CR002":
        return DuplicateEventId(str(exc))
    if code == "23505":
        if "event_id" in (getattr(exc, "constraint_name", None) or ""):
            return DuplicateEventId(str(exc))
        return WrongExpectedVersion(stream, expected, -1)
    return exc


def _decode(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        event_id=row[1],
        stream=row[2],
        version=row[3],
        type=row[4],
        data=orjson.loads(row[5]),
        metadata=orjson.loads(row[6]),
        recorded_at=row[7],
        position=row[0],
    )


def _read_all_sql(categories: int | None, types: bool) -> str:
    """``categories``: None for no filter, else how many (one uses the (category, position)
    index for ordering; several are filtered from the position order)."""
    where = "e.position > $1 AND e.position < (SELECT v FROM hz)"
    n = 3
    if categories == 1:
        where += f" AND e.category = (${n}::text[])[1]"
        n += 1
    elif categories is not None:
        where += f" AND e.category = ANY(${n}::text[])"
        n += 1
    if types:
        where += f" AND e.type = ANY(${n}::text[])"
    # One statement, one snapshot: the page plus the highest visible position, so a filtered
    # reader can move its checkpoint past events it does not want without skipping any it does.
    # (Comparing with a scalar subquery, not a join with the CTE, keeps both as index probes.)
    return f"""
        WITH hz AS MATERIALIZED (SELECT {_HORIZON} AS v)
        (SELECT {_COLUMNS.replace("position,", "e.position,", 1)} FROM eventstore.events e
          WHERE {where} ORDER BY e.position LIMIT $2)
        UNION ALL
        SELECT (SELECT e.position FROM eventstore.events e WHERE e.position < (SELECT v FROM hz)
                ORDER BY e.position DESC LIMIT 1),
               NULL, NULL, NULL, NULL, NULL, NULL, NULL"""


async def committed_after_on(
    conn: asyncpg.Connection, after: int, types: Sequence[str]
) -> list[RecordedEvent]:
    """Every event of ``types`` after ``after`` that ``conn``'s statement snapshot sees committed,
    in position order, ignoring the readers' horizon. Only for a caller that has stopped every
    writer of such events that matters (a rebuild's switch-over, holding the live checkpoint):
    a reader that pages on with the horizon must not use it, as it may skip a late commit."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM eventstore.events WHERE position > $1 AND type = ANY($2::text[])"
        " ORDER BY position",
        after,
        list(types),
    )
    return [_decode(r) for r in rows]


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self.dsn = dsn
        self._listener: asyncpg.Connection | None = None
        # Each subscriber's wake-up and the categories it reads (None: every category).
        self._waiters: dict[asyncio.Event, frozenset[str] | None] = {}
        self._notified = -1
        self._listen_lock = asyncio.Lock()
        self._to_announce = -1
        self._announce_categories: set[str] | None = set()  # None: some commit named none
        self._announce = asyncio.Event()
        self._notifier: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10
    ) -> PostgresEventStore:
        from shared.db import connect_pool

        pool = await connect_pool(dsn, min_size=min_size, max_size=max_size)
        return cls(pool, dsn)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def migrate(self) -> None:
        async with self._pool.acquire() as conn:
            await migrate(conn, "eventstore", MIGRATIONS)

    # --- writing -------------------------------------------------------------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            if len(events) == 1:
                result = await self._append_one(conn, stream, events[0], expected_version)
            else:
                result = await self._append_on(conn, stream, events, expected_version)
        APPEND_SECONDS.observe(time.perf_counter() - started)
        if not result.idempotent:
            EVENTS_APPENDED.inc(len(events))
            self.committed(result.position, [category_of(stream)])
        return result

    async def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Several streams, atomically, in one call (one round trip, one transaction)."""
        started = time.perf_counter()
        args = _batch_args(appends)
        async with self._pool.acquire() as conn:
            try:
                rows = await conn.fetch(_BATCH, *args)
            except (asyncpg.UniqueViolationError, WrongVersionSignal) as exc:
                return await self._multi_retry(conn, appends, exc)
            except asyncpg.PostgresError as exc:
                stream = getattr(exc, "hint", None) or appends[0].stream
                raise _translate(exc, stream, None) from None
        results = _batch_results(appends, rows)
        APPEND_SECONDS.observe(time.perf_counter() - started)
        EVENTS_APPENDED.inc(len(rows))
        self.committed(max(r.position for r in results), [category_of(a.stream) for a in appends])
        return results

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PostgresUnitOfWork]:
        async with self._pool.acquire() as conn, conn.transaction():
            uow = _PostgresUnitOfWork(self, conn)
            yield uow
        if uow.position is not None:
            self.committed(uow.position, uow.categories)

    async def append_batch_on(
        self, conn: asyncpg.Connection, appends: Sequence[StreamAppend]
    ) -> list[AppendResult]:
        """``append_multi`` inside a transaction the caller owns (bulk imports). The caller
        must call ``committed(position)`` after its commit to wake subscribers."""
        try:
            rows = await conn.fetch(_BATCH, *_batch_args(appends))
        except asyncpg.PostgresError as exc:
            stream = getattr(exc, "hint", None) or appends[0].stream
            expected = next((a.expected_version for a in appends if a.stream == stream), None)
            raise _translate(exc, stream, expected) from None
        EVENTS_APPENDED.inc(len(rows))
        return _batch_results(appends, rows)

    async def _multi_retry(
        self, conn: asyncpg.Connection, appends: Sequence[StreamAppend], exc: Exception
    ) -> list[AppendResult]:
        """A multi-append failed: an idempotent retry if every event is already stored."""
        results = []
        for a in appends:
            args = _append_args(a.stream, a.events, a.expected_version)
            try:
                rows = await conn.fetch(_EXISTING, a.stream, args[2], args[3], args[4])
            except asyncpg.PostgresError as again:
                raise _translate(again, a.stream, a.expected_version) from None
            if not rows:
                stream = getattr(exc, "hint", None) or a.stream
                expected = next(
                    (x.expected_version for x in appends if x.stream == stream), a.expected_version
                )
                raise _translate(exc, stream, expected) from None
            results.append(AppendResult(a.stream, rows[-1][0], rows[-1][1], True, rows[-1][2]))
        return results

    async def append_on(
        self,
        conn: asyncpg.Connection,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        """Append inside a transaction the caller owns (bulk imports batch many streams).
        The caller must call ``committed(position)`` after its commit to wake subscribers."""
        result = await self._append_on(conn, stream, events, expected_version)
        if not result.idempotent:
            EVENTS_APPENDED.inc(len(events))
        return result

    async def _append_one(
        self, conn: asyncpg.Connection, stream: str, event: NewEvent, expected: ExpectedVersion
    ) -> AppendResult:
        args = _append_args(stream, [event], expected)
        try:
            row = await conn.fetchrow(
                _APPEND_ONE, stream, args[1], event.event_id, event.type, args[4][0], args[5][0]
            )
        except asyncpg.UniqueViolationError:
            row = None  # a racing writer took the version, or this event is already stored
        except asyncpg.PostgresError as exc:
            raise _translate(exc, stream, expected) from None
        if row is not None:
            return AppendResult(stream, row[0], row[1], False, row[2])
        try:
            rows = await conn.fetch(_EXISTING, stream, args[2], args[3], args[4])
        except asyncpg.PostgresError as exc:
            raise _translate(exc, stream, expected) from None
        if rows:
            return AppendResult(stream, rows[-1][0], rows[-1][1], True, rows[-1][2])
        actual = await conn.fetchval(
            "SELECT max(version) FROM eventstore.events WHERE stream_id = $1", stream
        )
        raise WrongExpectedVersion(stream, expected, -1 if actual is None else int(actual))

    async def _append_on(
        self,
        conn: asyncpg.Connection,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        args = _append_args(stream, events, expected_version)
        try:
            rows = await conn.fetch(_APPEND, *args)
        except (asyncpg.UniqueViolationError, WrongVersionSignal) as exc:
            # Either a concurrent writer won the race or these events are already stored (a
            # retry). Outside a caller's transaction we can tell which.
            if conn.is_in_transaction():
                raise _translate(exc, stream, expected_version) from None
            try:
                rows = await conn.fetch(_EXISTING, stream, args[2], args[3], args[4])
            except asyncpg.PostgresError as again:
                raise _translate(again, stream, expected_version) from None
            if not rows:
                raise _translate(exc, stream, expected_version) from None
            return AppendResult(stream, rows[-1][0], rows[-1][1], True, rows[-1][2])
        except asyncpg.PostgresError as exc:
            raise _translate(exc, stream, expected_version) from None
        return AppendResult(stream, rows[-1][0], rows[-1][1], False, rows[-1][2])

    # --- reading -------------------------------------------------------------------------------

    async def read_stream(
        self,
        stream: str,
        from_version: int = 0,
        direction: Direction = Direction.FORWARDS,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        if direction is Direction.FORWARDS:
            cond, order = "version >= $2", "ASC"
        else:
            cond, order = "version <= $2", "DESC"
            if from_version < 0:
                from_version = 2**62
        sql = (
            f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = $1 AND {cond}"
            f" ORDER BY version {order} LIMIT $3"
        )
        rows = await self._pool.fetch(sql, stream, from_version, limit)
        return [_decode(r) for r in rows]

    async def read_all(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> ReadAllPage:
        async with self._pool.acquire() as conn:
            return await self.read_all_on(
                conn, after, categories=categories, types=types, limit=limit
            )

    async def read_all_on(
        self,
        conn: asyncpg.Connection,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> ReadAllPage:
        sql = _read_all_sql(None if categories is None else len(categories), types is not None)
        args: list[Any] = [after, limit]
        if categories is not None:
            args.append(list(categories))
        if types is not None:
            args.append(list(types))
        rows = await conn.fetch(sql, *args)
        horizon_row = rows[-1]
        events = [_decode(r) for r in rows[:-1]]
        if len(events) == limit:
            last = events[-1].position
        else:
            visible_max = horizon_row[0]
            last = max(after, visible_max) if visible_max is not None else after
        return ReadAllPage(events, last)

    async def backlog(
        self,
        after: int,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        cap: int = 1_000_000,
    ) -> Backlog:
        where, args = "position > $1", list[Any]([after])
        if categories is not None:
            args.append(list(categories))
            where += f" AND category = ANY(${len(args)}::text[])"
        if types is not None:
            args.append(list(types))
            where += f" AND type = ANY(${len(args)}::text[])"
        args.append(cap)
        row = await self._pool.fetchrow(
            f"""SELECT (SELECT count(*) FROM (SELECT 1 FROM eventstore.events
                          WHERE {where} LIMIT ${len(args)}) t),
                       (SELECT recorded_at FROM eventstore.events WHERE {where}
                          ORDER BY position LIMIT 1)""",
            *args,
        )
        return Backlog(int(row[0]), row[1])

    async def read_streams(self, streams: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        """Many whole streams in one query (bulk work: imports, batch loads)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = ANY($1::text[])"
            " ORDER BY stream_id, version",
            list(set(streams)),
        )
        out: dict[str, list[RecordedEvent]] = {}
        for r in rows:
            out.setdefault(r[2], []).append(_decode(r))
        return out

    async def read_heads(self, streams: Sequence[str]) -> dict[str, RecordedEvent]:
        """The last event of each stream that has one, in one query."""
        rows = await self._pool.fetch(
            f"""SELECT h.* FROM unnest($1::text[]) s(name)
                CROSS JOIN LATERAL (SELECT {_COLUMNS} FROM eventstore.events
                    WHERE stream_id = s.name ORDER BY version DESC LIMIT 1) h""",
            list(set(streams)),
        )
        return {r[2]: _decode(r) for r in rows}

    async def get_event(self, event_id: uuid.UUID) -> RecordedEvent | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM eventstore.events WHERE event_id = $1", event_id
        )
        return _decode(row) if row else None

    async def stream_version(self, stream: str) -> int:
        v = await self._pool.fetchval(
            "SELECT max(version) FROM eventstore.events WHERE stream_id = $1", stream
        )
        return -1 if v is None else int(v)

    async def head_position(self) -> int:
        """The last committed event's position. (Not limited by the readers' horizon: a caller
        waiting "until everything committed so far is projected" must not get an older head
        because some unrelated transaction is still open.)"""
        v = await self._pool.fetchval("SELECT max(position) FROM eventstore.events")
        return 0 if v is None else int(v)

    # --- live subscriptions ---------------------------------------------------------------------

    def committed(self, position: int, categories: Iterable[str] | None = None) -> None:
        """Announce a commit: wake this process's subscribers now and other processes through
        one coalesced NOTIFY (sent outside the writing transaction, see 0001_events.sql).
        ``categories``, the streams' categories the commit wrote to, wake only the subscribers
        reading them (None: every subscriber): a commit of messages does not send the
        contacts' read models to read nothing."""
        named = None if categories is None else frozenset(categories)
        self._notified = max(self._notified, position)
        self._wake(named)
        self._to_announce = max(self._to_announce, position)
        if named is None or self._announce_categories is None:
            self._announce_categories = None
        else:
            self._announce_categories |= named
        self._announce.set()
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.get_running_loop().create_task(self._announce_loop())

    async def _announce_loop(self) -> None:
        """Send the coalesced NOTIFYs ("<position>" or "<position>:<category>,..."). A lost
        connection (a database restart) is opened again; a NOTIFY lost meanwhile only delays
        other processes' readers until their idle_timeout."""
        while True:
            try:
                conn = await asyncpg.connect(self._dsn)
            except Exception as exc:
                if not transient(exc):
                    raise
                await asyncio.sleep(0.5)
                continue
            try:
                while True:
                    await self._announce.wait()
                    # Gather the commits of the next moment into one NOTIFY: at thousands of
                    # appends a second, one per append would cost as much as the appends.
                    await asyncio.sleep(NOTIFY_WINDOW)
                    self._announce.clear()
                    named, self._announce_categories = self._announce_categories, set()
                    payload = str(self._to_announce)
                    if named is not None and len(payload) + sum(len(c) + 1 for c in named) < 7900:
                        payload += ":" + ",".join(sorted(named))
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except Exception as exc:
                if not transient(exc):
                    raise
                self._announce_categories = None  # the latest position, for everyone
                self._announce.set()  # announce the latest position on the new connection
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _ensure_listener(self) -> None:
        async with self._listen_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(lambda _c: self._wake_all())
            self._listener = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        position, _, named = payload.partition(":")
        with contextlib.suppress(ValueError):
            self._notified = max(self._notified, int(position))
        self._wake(frozenset(named.split(",")) if named else None)

    def _wake_all(self) -> None:
        self._wake(None)

    def _wake(self, categories: frozenset[str] | None) -> None:
        """Wake the subscribers reading any of ``categories`` (None: all of them)."""
        for ev, reads in self._waiters.items():
            if categories is None or reads is None or not reads.isdisjoint(categories):
                ev.set()

    async def subscribe(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 1000,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[ReadAllPage]:
        """Catch up, then wait for NOTIFY. ``idle_timeout`` is only a safety net for a lost
        listener connection; the hot path is woken by notifications."""
        wake = asyncio.Event()
        self._waiters[wake] = frozenset(categories) if categories else None
        try:
            await self._ensure_listener()
            position = after
            retries = 0
            while True:
                wake.clear()
                page = await self.read_all(
                    position, categories=categories, types=types, limit=batch_size
                )
                if page.events or page.last_position > position:
                    position = page.last_position
                    retries = 0
                    yield page
                    if len(page.events) == batch_size:
                        continue
                if self._notified > position and retries < 12:
                    # Something committed that is still behind the visibility horizon (an older
                    # transaction is open): look again shortly instead of waiting for NOTIFY.
                    retries += 1
                    await asyncio.sleep(min(0.0005 * 2**retries, 0.05))
                    continue
                # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation
                # that arrives as the wake-up does, and this generator would never stop.
                waiter = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({waiter}, timeout=idle_timeout)
                finally:
                    waiter.cancel()
                if self._listener is None or self._listener.is_closed():
                    self._listener = None
                    with contextlib.suppress(OSError, asyncpg.PostgresError):
                        await self._ensure_listener()
        finally:
            self._waiters.pop(wake, None)

    # --- audit ---------------------------------------------------------------------------------

    async def verify(self, stream: str | None = None) -> VerifyReport:
        where, args = ("WHERE stream_id = $1", [stream]) if stream else ("", [])
        broken: list[tuple[str, int]] = []
        current, prev, streams, count = "", b"", 0, 0
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            cursor = conn.cursor(
                f"""SELECT stream_id, version, event_id, type, data::text, metadata::text,
                           recorded_at, hash FROM eventstore.events {where}
                    ORDER BY stream_id, version""",
                *args,
                prefetch=5000,
            )
            async for r in cursor:
                count += 1
                if r["stream_id"] != current:
                    current, prev, streams = r["stream_id"], b"", streams + 1
                expected = hashing.event_hash(
                    prev,
                    r["event_id"],
                    current,
                    r["version"],
                    r["type"],
                    r["data"],
                    r["metadata"],
                    r["recorded_at"],
                )
                if bytes(r["hash"]) != expected:
                    broken.append((current, r["version"]))
                prev = bytes(r["hash"])
        return VerifyReport(streams=streams, events=count, broken=broken)

    async def close(self) -> None:
        if self._notifier is not None:
            self._notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._notifier
        if self._listener is not None and not self._listener.is_closed():
            with contextlib.suppress(Exception):
                await self._listener.close()
        self._listener = None
        await self._pool.close()


class _PostgresUnitOfWork:
    def __init__(self, store: PostgresEventStore, conn: asyncpg.Connection) -> None:
        self.store, self.connection = store, conn
        self.position: int | None = None  # the last appended, to announce after the commit
        self.categories: set[str] = set()  # the categories it appended to, to announce too

    async def append_multi(self, appends: list[StreamAppend]) -> list[AppendResult]:
        results = await self.store.append_batch_on(self.connection, appends)
        self.position = max([self.position or 0, *(r.position for r in results)])
        self.categories.update(category_of(a.stream) for a in appends)
        return results
