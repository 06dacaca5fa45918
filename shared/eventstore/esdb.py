"""The EventStoreDB/KurrentDB event store, on the ``eventstoredb`` 0.9 asyncio client (grpclib).

Same contract as postgres.py (docs/architecture.md §2), within these limits of the protocol and
the client:
- Plaintext only: the client has no TLS and sends no credentials, so ``connect`` refuses a URL
  without ``Tls=false`` or with a user (kurrentdbclient is the complete alternative).
- ``append_multi`` is NOT atomic: ESDB appends to one stream per call, so streams are written one
  after the other and a failure leaves the earlier ones written.
- Idempotency by event id is checked where a retry would sit: right after the expected version
  (int / NO_STREAM), or among the stream's last events (ANY / EXISTS); type and data are compared
  as on PostgreSQL. Ids stored anywhere else (deeper in the stream, in another stream) are not
  found, and ESDB itself compares ids only.
- The hash chain is computed client-side over a client timestamp: the metadata carries
  ``"$recorded_at"`` (ISO 8601 UTC, also ``RecordedEvent.recorded_at``) and, last, ``"$hash"``
  (hex); both keys are reserved and hidden from readers. Every append re-reads the stream tail and
  sends the exact expected revision, so racing writers (even with ANY) cannot fork the chain.
- Positions are commit positions; gRPC appends give every event prepare == commit position, which
  ``_from`` relies on, so ``after`` must be 0 or a position this store returned.
- ``get_event`` scans $all (slow); a whole-log ``verify`` keeps one hash per stream in memory.
- No signed checkpoints, exports or inclusion proofs (docs/architecture.md §2a):
  ``shared.eventstore.audit.port.audit_log`` refuses this backend with CheckpointsUnsupported.
- The client drops the server's checkpoint messages, so a filtered live subscription reports
  progress only when a matching event arrives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

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

_ATTEMPTS = 3  # ANY/EXISTS appends re-read the tail and retry this often when a writer races them
_WINDOW = 8  # events past the batch size searched at the tail for a retried ANY/EXISTS batch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HASH_KEY = b',"$hash":"'
_RESERVED = ("$hash", "$recorded_at")


@functools.cache
def _lib() -> Any:
    """The client's public names, imported on first use: eventstoredb 0.9 imports only with
    setuptools<81 (its betterproto imports pkg_resources), and this module must import anywhere."""
    import eventstoredb
    from eventstoredb import events, exceptions, filters, options
    from grpclib import const
    from grpclib import exceptions as grpc_errors

    names: dict[str, Any] = {"Client": eventstoredb.Client, "Status": const.Status}
    for module in (options, filters, events, exceptions, grpc_errors):
        names.update((k, v) for k, v in vars(module).items() if not k.startswith("_"))
    conflicts = (names["RevisionMismatchError"], names["StreamAlreadyExistsError"])
    return SimpleNamespace(**names, conflicts=(*conflicts, names["StreamNotFoundError"]))


# --- pure pieces (unit-tested without a server) ------------------------------------------------


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    query = {k.lower(): v.lower() for k, v in parse_qsl(parts.query)}
    if parts.scheme != "esdb" or not parts.hostname:
        raise ValueError(f"expected esdb://host:port?Tls=false, got {url!r}")
    if query.get("tls") != "false" or parts.username or parts.password:
        raise ValueError(
            "eventstoredb 0.9 speaks plaintext only (no TLS, no credentials): use "
            "esdb://host:port?Tls=false on a trusted network"
        )


def _plan(stream: str, expected: ExpectedVersion, last: int) -> int:
    """The revision to send (-1: no stream yet), or raise if ``expected`` cannot hold against the
    stream's ``last`` version. ANY/EXISTS send the exact last revision too: the new hashes chain
    on that event, so a writer racing in between must make this append fail (and retry)."""
    if isinstance(expected, StreamState):
        if expected is StreamState.NO_STREAM and last >= 0:
            raise WrongExpectedVersion(stream, expected, last)
        if expected is StreamState.EXISTS and last < 0:
            raise WrongExpectedVersion(stream, expected, last)
        return last
    if expected < 0:
        raise ValueError(f"expected version must be >= 0 or a StreamState, got {expected}")
    if expected != last:
        raise WrongExpectedVersion(stream, expected, last)
    return expected


def _wire(revision: int) -> Any:
    return _lib().AppendExpectedRevision.NO_STREAM if revision < 0 else revision


def _rx_escape(text: str) -> str:
    # A backslash before ASCII punctuation is a literal in both .NET (the server's) and Python.
    return "".join(c if not c.isascii() or c.isalnum() or c == "_" else "\\" + c for c in text)


def _alternation(names: Collection[str]) -> str:
    return "(?:" + "|".join(_rx_escape(n) for n in names) + ")" if names else "(?!)"


def category_regex(categories: Collection[str]) -> str:
    """Stream names whose category (the part before the first '-') is one of ``categories``."""
    return f"^{_alternation(categories)}(?:-|$)"


def type_regex(types: Collection[str]) -> str:
    return f"^{_alternation(types)}$"


def _from(after: int) -> Any:
    lib = _lib()
    if after <= 0:
        return lib.StreamPosition.START
    return lib.AllPosition(commit_position=after, prepare_position=after)


@dataclass(frozen=True, slots=True)
class _Filter:
    categories: Collection[str] | None = None
    types: Collection[str] | None = None

    def server(self) -> Any:
        """The client sends one filter: by category if given (types are then checked here), else
        by type; unfiltered reads still leave out system events."""
        lib = _lib()
        if self.categories is not None:
            return lib.StreamNameFilter(regex=category_regex(self.categories))
        if self.types is not None:
            return lib.EventTypeFilter(regex=type_regex(self.types))
        return lib.ExcludeSystemEventsFilter()

    def wanted(self, ev: Any) -> bool:
        return (
            not ev.type.startswith("$")
            and (self.categories is None or category_of(ev.stream_name) in self.categories)
            and (self.types is None or ev.type in self.types)
        )

    def page(
        self, after: int, items: Sequence[Any], requested: int, head: int, limit: int
    ) -> tuple[ReadAllPage, bool]:
        """A page from what the server returned for ``requested`` events read from ``after``
        (inclusive, hence dropped), and whether more may follow. When the server ran dry, all up
        to ``head`` (read just before) was scanned, so a filtered reader may advance that far."""
        more, last, out = len(items) >= requested, after, list[RecordedEvent]()
        for ev in items:
            if ev.position.commit_position <= after:
                continue
            if len(out) == limit:
                more = True
                break
            last = ev.position.commit_position
            if self.wanted(ev):
                out.append(_to_recorded(ev))
        return ReadAllPage(out, last if more else max(last, head)), more


@dataclass(frozen=True, slots=True)
class _Prepared:
    event: NewEvent
    data: bytes
    metadata: bytes  # the user's metadata + "$recorded_at", then "$hash" appended as text


def _chain(
    stream: str, events: Sequence[NewEvent], first_version: int, prev: bytes, at: datetime
) -> list[_Prepared]:
    stamp, out = at.isoformat(), []
    for i, e in enumerate(events):
        if any(k in e.metadata for k in _RESERVED):
            raise ValueError(f"metadata keys {_RESERVED} are reserved by the store")
        data, meta = orjson.dumps(e.data), orjson.dumps({**e.metadata, "$recorded_at": stamp})
        prev = hashing.event_hash(
            prev, e.event_id, stream, first_version + i, e.type, data.decode(), meta.decode(), at
        )
        # "$hash" goes after the exact text that was hashed, so verify cuts it off textually and
        # never depends on how a JSON library re-serialises the metadata.
        out.append(_Prepared(e, data, meta[:-1] + _HASH_KEY + prev.hex().encode() + b'"}'))
    return out


def _split_hash(raw: bytes | None) -> tuple[bytes, bytes] | None:
    """(the metadata text that was hashed, the stored hash), or None if there is no hash."""
    raw = raw or b""
    cut = len(raw) - len(_HASH_KEY) - 66  # then 64 hex digits and '"}'
    if cut < 1 or not raw.startswith(_HASH_KEY, cut) or not raw.endswith(b'"}'):
        return None
    try:
        return raw[:cut] + b"}", bytes.fromhex(raw[cut + len(_HASH_KEY) : -2].decode())
    except ValueError:
        return None


class _ChainChecker:
    """Fed stored events in stream order (of one stream, or $all), builds the VerifyReport."""

    def __init__(self) -> None:
        self.prev: dict[str, bytes] = {}  # per stream: the stored hash the next event chains on
        self.events = 0
        self.broken: list[tuple[str, int]] = []

    def feed(self, ev: Any) -> None:
        if ev.stream_name.startswith("$") or ev.type.startswith("$"):
            return
        self.events += 1
        prev, split, ok = self.prev.get(ev.stream_name, b""), _split_hash(ev.metadata), False
        self.prev[ev.stream_name] = split[1] if split else b""
        if split is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                at = datetime.fromisoformat(orjson.loads(split[0])["$recorded_at"])
                data, meta = (ev.data or b"").decode(), split[0].decode()
                own = hashing.event_hash(
                    prev, ev.id, ev.stream_name, ev.revision, ev.type, data, meta, at
                )
                ok = own == split[1]
        if not ok:
            self.broken.append((ev.stream_name, ev.revision))

    def report(self) -> VerifyReport:
        return VerifyReport(streams=len(self.prev), events=self.events, broken=self.broken)


def _json_object(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:  # written by another tool: keep the bytes
        return {"$raw": base64.b64encode(raw).decode()}
    return value if isinstance(value, dict) else {"$value": value}


def _to_recorded(ev: Any) -> RecordedEvent:
    """A client event (eventstoredb.events.RecordedEvent) as the contract's RecordedEvent."""
    meta = _json_object(ev.metadata)
    meta.pop("$hash", None)
    stamp = meta.pop("$recorded_at", None)
    if isinstance(stamp, str):
        at = datetime.fromisoformat(stamp)
    else:  # not written by this store: ESDB's own time, in 100 ns ticks since 1970
        at = _EPOCH + timedelta(microseconds=ev.created // 10)
    data, pos = _json_object(ev.data), ev.position.commit_position
    return RecordedEvent(ev.id, ev.stream_name, ev.revision, ev.type, data, meta, at, pos)


def _match_existing(
    stream: str, events: Sequence[NewEvent], stored: Sequence[Any]
) -> AppendResult | None:
    """The result of an idempotent retry if every id of ``events`` is in ``stored`` with the same
    type and data; None if none is; DuplicateEventId if only some are, or with other content."""
    by_id = {e.id: e for e in stored}
    hits = [by_id[e.event_id] for e in events if e.event_id in by_id]
    if not hits:
        return None
    for e in events:
        h = by_id.get(e.event_id)
        if (
            h is None
            or h.type != e.type
            or _json_object(h.data) != _json_object(orjson.dumps(e.data))
        ):
            raise DuplicateEventId(
                f"stream {stream!r}: event {e.event_id} clashes with a stored one"
            )
    last = max(hits, key=lambda h: h.revision)
    return AppendResult(stream, last.revision, last.position.commit_position, idempotent=True)


def _transient(exc: BaseException) -> bool:
    lib = _lib()
    if isinstance(exc, OSError | lib.StreamTerminatedError):
        return True
    return isinstance(exc, lib.GRPCError) and exc.status is lib.Status.UNAVAILABLE


# --- the store ---------------------------------------------------------------------------------


class EventStoreDBStore(WithoutTransactions):
    def __init__(self, client: Any) -> None:
        self._client = client
        self._last_stamp = _EPOCH

    @classmethod
    async def connect(cls, url: str) -> EventStoreDBStore:
        """No I/O here: grpclib opens the connection on the first call."""
        _check_url(url)
        return cls(_lib().Client(url))

    def _stamp(self) -> datetime:
        # Strictly increasing, so two attempts at one batch never write equal metadata bytes:
        # _confirm tells our write from a racing identical retry by them.
        self._last_stamp = max(datetime.now(UTC), self._last_stamp + timedelta(microseconds=1))
        return self._last_stamp

    async def _iter(self, source: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        """The recorded events of a client read (not CaughtUp & co); a missing stream is empty."""
        with contextlib.suppress(_lib().StreamNotFoundError):
            async with contextlib.aclosing(source) as items:
                async for item in items:
                    if getattr(item, "event", None) is not None:
                        yield item.event

    async def _read(
        self, stream: str, revision: int | None, backwards: bool, count: int | None
    ) -> list[Any]:
        lib = _lib()
        end = lib.StreamPosition.END if backwards else lib.StreamPosition.START
        opts = lib.ReadStreamOptions(
            from_revision=end if revision is None else revision,
            direction=lib.ReadDirection.BACKWARDS if backwards else lib.ReadDirection.FORWARDS,
            **({} if count is None else {"max_count": count}),
        )
        return [e async for e in self._iter(self._client.read_stream(stream, opts))]

    async def _read_all(self, after: int, count: int, flt: Any, back: bool = False) -> list[Any]:
        lib = _lib()
        opts = lib.ReadAllOptions(
            from_position=lib.StreamPosition.END if back else _from(after),
            max_count=count,
            direction=lib.ReadDirection.BACKWARDS if back else lib.ReadDirection.FORWARDS,
            filter=flt,
        )
        return [e async for e in self._iter(self._client.read_all(opts))]

    def _all_options(self) -> Any:
        """All of $all from the start, without system events."""
        return _lib().ReadAllOptions(filter=_lib().ExcludeSystemEventsFilter())

    # --- writing -------------------------------------------------------------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        if not events:
            raise ValueError("append needs at least one event")
        lib, expected = _lib(), expected_version
        if isinstance(expected, int) and expected < 0:
            raise ValueError(f"expected version must be >= 0 or a StreamState, got {expected}")
        loose, error = expected in (StreamState.ANY, StreamState.EXISTS), None
        for _ in range(_ATTEMPTS):
            tail = await self._read(stream, None, True, len(events) + _WINDOW if loose else 1)
            last = tail[0].revision if tail else -1
            if loose:  # a retry of this batch would sit at the tail: find where it would start
                index = {e.event_id: i for i, e in enumerate(events)}
                starts = [t.revision - index[t.id] for t in tail if t.id in index]
                found = await self._existing(stream, events, min(starts)) if starts else None
            else:  # ...or right after the expected version
                base = expected if isinstance(expected, int) else -1
                found = await self._existing(stream, events, base + 1) if last > base else None
            if found is not None:
                return found
            revision = _plan(stream, expected, last)
            split = _split_hash(tail[0].metadata) if tail else None
            prev = split[1] if split else b""
            prepared = _chain(stream, events, revision + 1, prev, self._stamp())
            payload = [
                lib.JsonEvent(
                    type=p.event.type, id=p.event.event_id, data=p.data, metadata=p.metadata
                )
                for p in prepared
            ]
            options = lib.AppendToStreamOptions(expected_revision=_wire(revision))
            try:
                result = await self._client.append_to_stream(stream, payload, options)
            except lib.conflicts as exc:
                error = exc  # a writer raced us: the next tail read tells retry from conflict
                continue
            return await self._confirm(stream, events, prepared, result.next_expected_revision)
        actual = getattr(error, "current_revision", None)
        raise WrongExpectedVersion(stream, expected, actual if isinstance(actual, int) else -1)

    async def _existing(
        self, stream: str, events: Sequence[NewEvent], first: int
    ) -> AppendResult | None:
        stored = await self._read(stream, max(first, 0), False, len(events))
        return _match_existing(stream, events, stored)

    async def _confirm(
        self, stream: str, events: Sequence[NewEvent], prepared: list[_Prepared], revision: int
    ) -> AppendResult:
        """ESDB answers a batch re-sent to the same place (same ids) with plain success, writing
        nothing. So read the last event back: our own metadata bytes (unique per attempt) mean we
        wrote it; other bytes mean a racing retry of the same batch did."""
        back = await self._read(stream, revision, False, 1)
        if back and back[0].metadata != prepared[-1].metadata:
            found = await self._existing(stream, events, revision - len(events) + 1)
            if found is not None:
                return found
        return AppendResult(stream, revision, back[0].position.commit_position if back else -1)

    async def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """NOT atomic on this backend (ESDB appends to one stream per call): the streams are
        appended in order, and a failure leaves the earlier ones written. PostgreSQL is atomic."""
        return [await self.append(a.stream, a.events, a.expected_version) for a in appends]

    # --- reading -------------------------------------------------------------------------------

    async def read_stream(
        self,
        stream: str,
        from_version: int = 0,
        direction: Direction = Direction.FORWARDS,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        if limit is not None and limit <= 0:
            return []
        backwards = direction is Direction.BACKWARDS
        start: int | None = max(from_version, 0)
        # ESDB reads nothing backwards from beyond the end: read from the end then.
        if backwards and (from_version < 0 or from_version >= await self.stream_version(stream)):
            start = None
        return [_to_recorded(e) for e in await self._read(stream, start, backwards, limit)]

    async def _page(self, after: int, flt: _Filter, limit: int) -> tuple[ReadAllPage, bool]:
        head = await self.head_position()
        items = await self._read_all(after, limit + 1, flt.server())
        return flt.page(after, items, limit + 1, head, limit)

    async def read_all(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> ReadAllPage:
        return (await self._page(after, _Filter(categories, types), limit))[0]

    async def backlog(
        self,
        after: int,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        cap: int = 1_000_000,
    ) -> Backlog:
        """Counted by paging through $all (no server-side count exists)."""
        count, oldest, position, flt = 0, None, after, _Filter(categories, types)
        while count < cap:
            page, more = await self._page(position, flt, min(1000, cap - count))
            if oldest is None and page.events:
                oldest = page.events[0].recorded_at
            count += len(page.events)
            if not more or page.last_position <= position:
                break
            position = page.last_position
        return Backlog(count, oldest)

    async def subscribe(
        self,
        after: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 1000,
        idle_timeout: float = 1.0,
    ) -> AsyncIterator[ReadAllPage]:
        """Catch up with read_all pages, then follow a catch-up subscription to $all, one page per
        event. eventstoredb 0.9 drops checkpoint messages, so a filtered live subscription yields
        only when a matching event arrives. ``idle_timeout`` is accepted for parity with the
        PostgreSQL store and unused (the server pushes). A dropped connection resumes by itself."""
        lib, flt, position, delay = _lib(), _Filter(categories, types), after, 0.0
        while True:
            try:
                more = True
                while more:
                    page, more = await self._page(position, flt, batch_size)
                    if page.events or page.last_position > position:
                        position = page.last_position
                        yield page
                opts = lib.SubscribeToAllOptions(from_position=_from(position), filter=flt.server())
                async with contextlib.aclosing(
                    self._iter(self._client.subscribe_to_all(opts))
                ) as live:
                    async for ev in live:
                        if ev.position.commit_position > position:
                            position, delay = ev.position.commit_position, 0.0
                            events = [_to_recorded(ev)] if flt.wanted(ev) else []
                            yield ReadAllPage(events, position)
            except Exception as exc:
                if not _transient(exc):
                    raise
            delay = min(max(delay * 2, 0.1), 5.0)  # the stream ended or broke: catch up again
            await asyncio.sleep(delay)

    async def get_event(self, event_id: UUID) -> RecordedEvent | None:
        """Slow on this backend: scans $all from the start (no event id index is reachable)."""
        source = self._client.read_all(self._all_options())
        async with contextlib.aclosing(self._iter(source)) as events:
            async for ev in events:
                if ev.id == event_id:
                    return _to_recorded(ev)
        return None

    async def stream_version(self, stream: str) -> int:
        tail = await self._read(stream, None, True, 1)
        return tail[0].revision if tail else -1

    async def head_position(self) -> int:
        last = await self._read_all(0, 1, None, back=True)
        return last[0].position.commit_position if last else 0

    async def verify(self, stream: str | None = None) -> VerifyReport:
        lib, checker = _lib(), _ChainChecker()
        if stream is not None:
            source = self._client.read_stream(stream, lib.ReadStreamOptions())
        else:
            source = self._client.read_all(self._all_options())
        async for ev in self._iter(source):
            checker.feed(ev)
        return checker.report()

    async def close(self) -> None:
        channel = getattr(self._client, "_channel", None)  # the client creates it on first use
        if channel is not None:
            channel.close()
