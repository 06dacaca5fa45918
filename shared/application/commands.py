"""The command runner: load a stream, decide, append at the version read, retry on conflict,
and answer a retried request with its first result (docs/architecture.md, "Commands").

A service describes each aggregate once (``Aggregate``: its stream, its fold and evolve, the
namespace its event ids derive from, and how its personal data is sealed if it has any); its
command handlers then shrink to decide functions handed to ``CommandRunner.execute``.

Exactly-once (AIP-155): the events of a request get ids derived from the request id, the
aggregate's stream and their index (``event_id``), so a retry finds its own events in the
stream and answers with the state they produced, and a racing duplicate is refused by the
store's unique event id. A call without a request id gets a random one for its own attempts.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from shared.application.replay import first_answer
from shared.domain.errors import Conflict, NotFound, StaleEtag
from shared.events.upcast import upcast_all
from shared.eventstore import (
    AppendResult,
    DuplicateEventId,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)

FINGERPRINT = "request_sha256"  # the event metadata key holding the request's fingerprint
ATTEMPTS = 3  # optimistic-concurrency attempts before a conflict reaches the caller
CONFLICT = (WrongExpectedVersion, DuplicateEventId)

Event = tuple[str, dict[str, Any]]  # (type, data), what decide functions return
Row = tuple[str, Mapping[str, Any], datetime, int]  # (type, data, recorded_at, version)
T = TypeVar("T")


class RequestIdReused(DuplicateEventId):
    """A request id already used by a different request (its events carry another request
    fingerprint): refused rather than answered with the other request's result."""


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


S = TypeVar("S", bound=Versioned)


def event_id(namespace: uuid.UUID, request_id: str, stream: str, index: int) -> uuid.UUID:
    """The id of the ``index``-th event a request appends to ``stream``."""
    return uuid.uuid5(namespace, f"{request_id}\n{stream}\n{index}")


def new_id(namespace: uuid.UUID, kind: str, request_id: str) -> str:
    """The id of an entity a request creates: the same on every retry of the request."""
    return str(uuid.uuid5(namespace, f"{kind}\n{request_id}") if request_id else uuid.uuid4())


def new_events(
    namespace: uuid.UUID,
    stream: str,
    decided: Sequence[Event],
    request_id: str,
    meta: Mapping[str, Any],
) -> list[NewEvent]:
    """Store-ready events with ids derived from the request (random ones without a request)."""
    return [
        NewEvent(
            type=t,
            data=d,
            metadata=dict(meta),
            event_id=event_id(namespace, request_id, stream, i) if request_id else uuid.uuid4(),
        )
        for i, (t, d) in enumerate(decided)
    ]


class Sealing(Protocol):
    """How an aggregate's personal fields are sealed in its events, with a key per stream."""

    async def key(self, id_: str) -> bytes | None:
        """The stream's key; None once it was destroyed (the data is erased)."""
        ...

    async def new_key(self, id_: str, connection: Any) -> bytes:
        """A key for a stream being created, written in the command's transaction."""
        ...

    def seal(self, key: bytes, id_: str, data: Mapping[str, Any]) -> dict[str, Any]: ...

    def unseal(self, key: bytes | None, id_: str, data: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    """What the runner needs to know about one kind of stream."""

    namespace: uuid.UUID  # event ids derive from it (never change it: retries would repeat)
    stream_of: Callable[[str], str]
    fold: Callable[[str, Iterable[Row]], S | None]  # (id, rows) -> state; None: no such thing
    evolve: Callable[[S | None, str, Mapping[str, Any], datetime, int], S]
    missing: str  # the NotFound reason when fold gives None
    id_field: str = "id"  # the metadata key naming the id in NotFound / Conflict
    exists: str = ""  # the Conflict reason when a stream to create exists already
    sealing: Sealing | None = None

    def events(
        self,
        stream: str,
        decided: Sequence[Event],
        request_id: str,
        meta: Mapping[str, Any],
        key: bytes | None = None,
        id_: str = "",
    ) -> list[NewEvent]:
        """Store-ready events: ids derived from the request, personal fields sealed with
        ``key`` when the aggregate seals and a key is given."""
        if self.sealing is not None and key is not None:
            seal = self.sealing.seal
            decided = [(t, seal(key, id_, d)) for t, d in decided]
        return new_events(self.namespace, stream, decided, request_id, meta)

    def not_found(self, id_: str) -> NotFound:
        return NotFound(self.missing, f"no such id {id_}", **{self.id_field: id_})


@dataclass(frozen=True)
class Loaded(Generic[S]):
    """A stream as read for a command: its events, its key (when it seals) and its state."""

    id: str
    stream: str
    events: list[RecordedEvent]
    key: bytes | None
    state: S | None


@dataclass(frozen=True)
class Outcome(Generic[S]):
    state: S
    appended: bool  # False: nothing to do, or the answer of an earlier execution
    first_event_id: uuid.UUID | None  # of the request's first event (now or originally)


Decide = Callable[[S], "list[Event] | Awaitable[list[Event]]"]
# Further appends in the same atomic write (identity claims): (state, decided, attempt).
Also = Callable[[S | None, list[Event], int], Awaitable[list[StreamAppend]]]
# Further writes in the same transaction (a key destroyed with the erasure): (connection).
Then = Callable[[Any], Awaitable[None]]


def apply(
    agg: Aggregate[S], state: S | None, decided: Sequence[Event], at: datetime | None, last: int
) -> S:
    """The state after ``decided`` were stored as versions ending at ``last``."""
    at = at or datetime.now(UTC)
    first = last - len(decided) + 1
    out = state
    for i, (t, d) in enumerate(decided):
        out = agg.evolve(out, t, d, at, first + i)
    assert out is not None, "a decision produces a state"
    return out


class CommandRunner:
    def __init__(self, store: EventStore, attempts: int = ATTEMPTS) -> None:
        self.store = store
        self.attempts = attempts

    # --- reading -------------------------------------------------------------------------------

    def fold(
        self, agg: Aggregate[S], id_: str, events: Sequence[RecordedEvent], key: bytes | None
    ) -> S | None:
        unseal = agg.sealing.unseal if agg.sealing is not None else None
        return agg.fold(
            id_,
            (
                (e.type, unseal(key, id_, e.data) if unseal else e.data, e.recorded_at, e.version)
                for e in upcast_all(events)
            ),
        )

    async def load(
        self,
        agg: Aggregate[S],
        id_: str,
        *,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> Loaded[S]:
        stream = agg.stream_of(id_)
        events = await self.store.read_stream(stream)
        key = await agg.sealing.key(id_) if agg.sealing is not None and events else None
        chosen = [
            e
            for e in events
            if (up_to_version is None or e.version <= up_to_version)
            and (as_of is None or e.recorded_at <= as_of)
        ]
        return Loaded(id_, stream, events, key, self.fold(agg, id_, chosen, key))

    async def get(self, agg: Aggregate[S], id_: str) -> S:
        state = (await self.load(agg, id_)).state
        if state is None:
            raise agg.not_found(id_)
        return state

    def replayed(
        self, agg: Aggregate[S], loaded: Loaded[S], request_id: str, fingerprint: str = ""
    ) -> Outcome[S] | None:
        """The state right after an earlier execution of ``request_id``, if there was one: the
        fold up to the last of the request's consecutive events. RequestIdReused if those
        events were written for a request with another ``fingerprint``."""
        if not request_id:
            return None
        ids = [e.event_id for e in loaded.events]
        first = event_id(agg.namespace, request_id, loaded.stream, 0)
        if first not in ids:
            return None
        at = ids.index(first)
        stored = loaded.events[at].metadata.get(FINGERPRINT, "")
        if fingerprint and stored and stored != fingerprint:
            raise RequestIdReused(f"request id {request_id!r} was used by another request")
        n = 1
        while at + n < len(ids) and ids[at + n] == event_id(
            agg.namespace, request_id, loaded.stream, n
        ):
            n += 1
        state = self.fold(agg, loaded.id, loaded.events[: at + n], loaded.key)
        assert state is not None
        return Outcome(state, False, first)

    def existing(self, agg: Aggregate[S], loaded: Loaded[S]) -> S:
        """The loaded state; NotFound when the stream has none."""
        if loaded.state is None:
            raise agg.not_found(loaded.id)
        return loaded.state

    def append_of(
        self,
        agg: Aggregate[S],
        loaded: Loaded[S],
        decided: Sequence[Event],
        request_id: str,
        meta: Mapping[str, Any],
    ) -> StreamAppend:
        """The append of ``decided`` to a loaded stream, at the version it was loaded at."""
        version = loaded.state.version if loaded.state is not None else -1
        return StreamAppend(
            loaded.stream,
            agg.events(loaded.stream, decided, request_id, meta, loaded.key, loaded.id),
            version if version >= 0 else StreamState.NO_STREAM,
        )

    async def earlier(
        self, agg: Aggregate[S], id_: str, request_id: str, fingerprint: str = ""
    ) -> Outcome[S] | None:
        """What an earlier execution of ``request_id`` on ``id_`` answered, if there was one."""
        if not request_id:
            return None
        return self.replayed(agg, await self.load(agg, id_), request_id, fingerprint)

    # --- writing -------------------------------------------------------------------------------

    async def retrying(
        self,
        attempt: Callable[[int], Awaitable[T]],
        earlier: Callable[[], Awaitable[T | None]],
        *,
        retry: bool = True,
    ) -> T:
        """Run ``attempt(0)``, ``attempt(1)``… while it loses an optimistic-concurrency race
        (at most ``attempts`` times; once if not ``retry``); any failure is answered with what
        ``earlier`` finds, when the same request already succeeded (``first_answer``)."""

        async def attempts() -> T:
            for n in range(self.attempts):
                try:
                    return await attempt(n)
                except RequestIdReused:
                    raise
                except CONFLICT:
                    if not retry or n == self.attempts - 1:
                        raise
            raise AssertionError("unreachable")

        return await first_answer(attempts(), earlier)

    async def write(
        self, appends: list[StreamAppend], then: Then | None = None
    ) -> list[AppendResult]:
        """One atomic write; with ``then``, its writes commit in the same transaction."""
        if then is None and len(appends) == 1:  # the common case: one plain append
            a = appends[0]
            return [await self.store.append(a.stream, a.events, a.expected_version)]
        if then is None:
            return await self.store.append_multi(appends)
        async with self.store.transaction() as uow:
            results = await uow.append_multi(appends)
            await then(uow.connection)
        return results

    async def run(
        self,
        agg: Aggregate[S],
        id_: str,
        decide: Decide[S],
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
        etag: str = "",
        also: Also[S] | None = None,
        then: Then | None = None,
        must_exist: bool = True,
    ) -> Outcome[S]:
        """Load, decide, append at the version read; a conflict decides again from the new
        version unless the caller named one with ``etag``."""
        request_id = request_id or uuid.uuid4().hex
        fingerprint = meta.get(FINGERPRINT, "")

        async def attempt(n: int) -> Outcome[S]:
            loaded = await self.load(agg, id_)
            if (done := self.replayed(agg, loaded, request_id, fingerprint)) is not None:
                return done
            state = loaded.state
            if state is None and must_exist:
                raise agg.not_found(id_)
            version = state.version if state is not None else -1
            if etag and etag != str(version):
                raise StaleEtag(
                    "ETAG_MISMATCH",
                    f"etag {etag!r} is stale; the current etag is {version}",
                    current_etag=str(version),
                )
            decided = await _decided(decide, state)
            if not decided:
                assert state is not None, "a missing stream always gets a decision or an error"
                return Outcome(state, False, None)
            own = self.append_of(agg, loaded, decided, request_id, meta)
            extra = await also(state, decided, n) if also is not None else []
            results = await self.write([own, *extra], then)
            after = apply(agg, state, decided, results[0].recorded_at, results[0].version)
            return Outcome(after, not results[0].idempotent, own.events[0].event_id)

        return await self.retrying(
            attempt, lambda: self.earlier(agg, id_, request_id, fingerprint), retry=not etag
        )

    async def execute(self, agg: Aggregate[S], id_: str, decide: Decide[S], **kw: Any) -> S:
        """``run``, answering with the state after the command."""
        return (await self.run(agg, id_, decide, **kw)).state

    async def create(
        self,
        agg: Aggregate[S],
        id_: str,
        plan: Callable[[int], Awaitable[tuple[list[Event], list[StreamAppend]]]],
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> S:
        """Start a new stream with what ``plan(attempt)`` decides (and its further appends),
        optimistically: nothing is read unless the append fails. A stream that exists and is
        not this request's own is ``agg.exists`` (or a conflict when the aggregate names none)."""
        request_id = request_id or uuid.uuid4().hex
        stream = agg.stream_of(id_)

        async def earlier() -> S | None:
            done = await self.earlier(agg, id_, request_id, meta.get(FINGERPRINT, ""))
            return done.state if done is not None else None

        async def attempt(n: int) -> S:
            decided, extra = await plan(n)
            try:
                if agg.sealing is not None:
                    sealing = agg.sealing

                    async with self.store.transaction() as uow:
                        key = await sealing.new_key(id_, uow.connection)
                        own = agg.events(stream, decided, request_id, meta, key, id_)
                        results = await uow.append_multi(
                            [StreamAppend(stream, own, StreamState.NO_STREAM), *extra]
                        )
                else:
                    own = agg.events(stream, decided, request_id, meta)
                    results = await self.write(
                        [StreamAppend(stream, own, StreamState.NO_STREAM), *extra]
                    )
            except CONFLICT:
                if (done := await earlier()) is not None:  # this request's own, sent twice
                    return done
                if agg.exists and await self.store.stream_version(stream) >= 0:
                    raise Conflict(
                        agg.exists, f"{stream} already exists", **{agg.id_field: id_}
                    ) from None
                raise
            if results[0].idempotent:
                return await self.get(agg, id_)
            return apply(agg, None, decided, results[0].recorded_at, results[0].version)

        return await self.retrying(attempt, earlier)

    async def append_once(
        self,
        agg: Aggregate[S],
        id_: str,
        decide: Callable[[S], list[Event]],
        key: str,
        meta: Mapping[str, Any],
        attempts: int = ATTEMPTS,
    ) -> bool | None:
        """For decisions the system makes itself (timers, reactors): decide from the stream and
        append under the fixed request id ``key`` at the version read, so however many callers
        race, the events are written once. ``meta`` names the actor (and, for a reactor, the
        cause: shared/projections/reactor.py). True if this call wrote them, False if there was
        nothing to do or another caller did it, None if the stream kept moving for
        ``attempts`` tries."""
        for _ in range(attempts):
            loaded = await self.load(agg, id_)
            state = loaded.state
            decided = decide(state) if state is not None else []
            if state is None or not decided:
                return False
            events = agg.events(loaded.stream, decided, key, meta, loaded.key, id_)
            try:
                result = await self.store.append(loaded.stream, events, state.version)
            except WrongExpectedVersion:
                continue  # it moved; decide again from the new version
            return not result.idempotent
        return None


async def _decided(decide: Decide[S], state: S | None) -> list[Event]:
    out = decide(state)  # type: ignore[arg-type]  # None only where the caller allows it
    if inspect.isawaitable(out):
        return await out
    return out
