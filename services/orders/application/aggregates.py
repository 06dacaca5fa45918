"""Load, decide and append for one stream at a time, shared by carts and orders.

Retries are exactly-once (AIP-155): event ids derive from the request id, so a retried call
finds its own events in the stream and answers with the state they produced; every command runs
under ``shared.application.replay.first_answer``, so an error reaches a caller only once the
same request is known not to have succeeded already.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from services.orders.domain.cart import Cart
from services.orders.domain.order import Order
from shared.application.replay import first_answer
from shared.domain.errors import NotFound, StaleEtag
from shared.events.upcast import upcast_all
from shared.eventstore import (
    EventStore,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)

NS = uuid.UUID("0b6f3c1e-8f0a-4a55-b4a9-5d8e2a7c9e31")
ATTEMPTS = 3
S = TypeVar("S", Cart, Order)
T = TypeVar("T")
Event = tuple[str, dict[str, Any]]


def event_id(request_id: str, stream: str, index: int) -> uuid.UUID:
    return uuid.uuid5(NS, f"{request_id}\n{stream}\n{index}")


def new_events(
    stream: str, decided: Sequence[Event], request_id: str, meta: Mapping[str, Any]
) -> list[NewEvent]:
    return [
        NewEvent(
            type=t,
            data=d,
            metadata=dict(meta),
            event_id=event_id(request_id, stream, i) if request_id else uuid.uuid4(),
        )
        for i, (t, d) in enumerate(decided)
    ]


@dataclass(frozen=True)
class Kind(Generic[S]):
    """What the generic handler needs to know about an aggregate."""

    stream_of: Callable[[str], str]
    fold: Callable[[Any], S | None]
    evolve: Callable[[S | None, str, Mapping[str, Any], datetime, int], S]
    missing: str  # NotFound reason


CART: Kind[Cart] = Kind(carts.stream_of, carts.fold, carts.evolve, "CART_NOT_FOUND")
ORDER: Kind[Order] = Kind(orders.stream_of, orders.fold, orders.evolve, "ORDER_NOT_FOUND")


def _rows(events: Sequence[RecordedEvent]) -> list[tuple[str, Any, datetime, int]]:
    return [(e.type, e.data, e.recorded_at, e.version) for e in upcast_all(events)]


class Aggregates:
    """Load, decide and append for one stream at a time, shared by carts and orders."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def load(self, kind: Kind[S], id_: str) -> S | None:
        return kind.fold(_rows(await self.store.read_stream(kind.stream_of(id_))))

    async def get(self, kind: Kind[S], id_: str) -> S:
        state = await self.load(kind, id_)
        if state is None:
            raise NotFound(kind.missing, f"no such id {id_}", id=id_)
        return state

    @staticmethod
    def replayed(
        kind: Kind[S], events: Sequence[RecordedEvent], stream: str, request_id: str
    ) -> S | None:
        """The state right after an earlier execution of ``request_id``, if there was one."""
        if not request_id:
            return None
        mine = {event_id(request_id, stream, i) for i in range(8)}
        done = [e.version for e in events if e.event_id in mine]
        if not done:
            return None
        return kind.fold(_rows([e for e in events if e.version <= max(done)]))

    async def replay(self, kind: Kind[S], id_: str, request_id: str) -> S | None:
        if not request_id:
            return None
        stream = kind.stream_of(id_)
        return self.replayed(kind, await self.store.read_stream(stream), stream, request_id)

    async def execute(
        self,
        kind: Kind[S],
        id_: str,
        decide: Callable[[S], list[Event]],
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
        etag: str = "",
    ) -> S:
        return await first_answer(
            self._execute(kind, id_, decide, request_id, meta, etag),
            lambda: self.replay(kind, id_, request_id),
        )

    async def _execute(
        self,
        kind: Kind[S],
        id_: str,
        decide: Callable[[S], list[Event]],
        request_id: str,
        meta: Mapping[str, Any],
        etag: str,
    ) -> S:
        stream = kind.stream_of(id_)
        for attempt in range(ATTEMPTS):
            events = await self.store.read_stream(stream)
            if (done := self.replayed(kind, events, stream, request_id)) is not None:
                return done
            state = kind.fold(_rows(events))
            if state is None:
                raise NotFound(kind.missing, f"no such id {id_}", id=id_)
            version: int = state.version
            if etag and etag != str(version):
                raise StaleEtag(
                    "ETAG_MISMATCH",
                    f"etag {etag!r} is stale; the current etag is {version}",
                    current_etag=str(version),
                )
            decided = decide(state)
            if not decided:
                return state
            try:
                result = await self.store.append(
                    stream, new_events(stream, decided, request_id, meta), version
                )
            except WrongExpectedVersion:
                if etag or attempt == ATTEMPTS - 1:
                    raise
                continue
            return apply(kind, state, decided, result.recorded_at, result.version)
        raise AssertionError("unreachable")

    async def append_once(
        self,
        kind: Kind[S],
        id_: str,
        decide: Callable[[S], list[Event]],
        key: str,
        actor: str,
        attempts: int = ATTEMPTS,
    ) -> bool | None:
        """For system decisions (timers, reactors): decide from the stream and append under the
        fixed request id ``key`` at the version read, so however many callers race, the events
        are written once. True if this call wrote them, False if there was nothing to do or
        another caller did it, None if the stream kept moving for ``attempts`` tries."""
        stream = kind.stream_of(id_)
        for _ in range(attempts):
            state = await self.load(kind, id_)
            decided = decide(state) if state is not None else []
            if state is None or not decided:
                return False
            events = new_events(stream, decided, key, {"schema": 1, "actor": actor})
            try:
                result = await self.store.append(stream, events, state.version)
            except WrongExpectedVersion:
                continue  # it moved; decide again from the new version
            return not result.idempotent
        return None


def apply(
    kind: Kind[S], state: S | None, decided: Sequence[Event], at: datetime | None, last: int
) -> S:
    at = at or datetime.now(UTC)
    first = last - len(decided) + 1
    out = state
    for i, (t, d) in enumerate(decided):
        out = kind.evolve(out, t, d, at, first + i)
    assert out is not None
    return out
