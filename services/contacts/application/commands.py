"""Command handlers: load, decide, append (with identity claims in the same atomic write).

Uniqueness of identities is guarded by one stream per identity ("contactidentity-<hash>"): a
registration appends ContactRegistered and IdentityClaimed to those streams in one transaction,
with expected versions, so two racing registrations of one email cannot both win.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.contacts.adapters.keys import DataKeys, seal, unseal
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact, ProfileInput
from services.contacts.domain.identity import identity_stream
from shared.domain.errors import Conflict, DomainError, NotFound, Precondition, StaleEtag
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
from shared.eventstore.port import Direction
from shared.eventstore.postgres import PostgresEventStore

_NS = uuid.UUID("6f1c7a3e-2b1d-4f57-9a51-3c2f0e9d8b10")
_ATTEMPTS = 3  # optimistic-concurrency retries when an identity stream moved under us
T = TypeVar("T")
# What a retry of an already executed request may run into because of its own first attempt.
REPLAY_CHECKED = (DomainError, WrongExpectedVersion, DuplicateEventId)


async def first_answer(run: Awaitable[T], earlier: Callable[[], Awaitable[T | None]]) -> T:
    """``run``'s result; if it fails, the earlier execution's result when there was one.

    Every command goes through this (AIP-155): an error is returned only once we know the same
    request did not already succeed, since a concurrent or earlier attempt of it is exactly what
    makes a retry fail (CONTACT_MERGED, IDENTITY_TAKEN, a lost optimistic-concurrency race)."""
    try:
        return await run
    except REPLAY_CHECKED:
        if (done := await earlier()) is not None:
            return done
        raise


def _event_id(request_id: str, stream: str, index: int) -> uuid.UUID:
    """Event ids derived from the request id make a retried command exactly-once (AIP-155)."""
    return uuid.uuid5(_NS, f"{request_id}\n{stream}\n{index}")


def _events(
    stream: str,
    decided: Sequence[domain.Event],
    request_id: str,
    meta: Mapping[str, Any],
    key: bytes | None = None,
) -> list[NewEvent]:
    """Store-ready events; with a key, personal fields are sealed (see adapters/keys.py)."""
    return [
        NewEvent(
            type=t,
            data=seal(key, d["contact_id"], d) if key is not None else d,
            metadata=dict(meta),
            event_id=_event_id(request_id, stream, i) if request_id else uuid.uuid4(),
        )
        for i, (t, d) in enumerate(decided)
    ]


def _apply(
    state: Contact, decided: Sequence[domain.Event], at: datetime | None, last: int
) -> Contact:
    at = at or datetime.now(UTC)
    first = last - len(decided) + 1
    for i, (t, d) in enumerate(decided):
        state = domain.evolve(state, t, d, at, first + i)
    return state


def _fold(events: Sequence[RecordedEvent], key: bytes | None) -> Contact | None:
    return domain.fold(
        (e.type, unseal(key, e.data["contact_id"], e.data)[0], e.recorded_at, e.version)
        for e in events
    )


_CONFLICT = (WrongExpectedVersion, DuplicateEventId)


class ContactCommands:
    def __init__(self, store: EventStore, keys: DataKeys) -> None:
        self.store = store
        self.keys = keys

    async def history(self, contact_id: str) -> tuple[list[RecordedEvent], bytes | None]:
        """The contact's recorded events (sealed) and its data key (None once erased)."""
        events = await self.store.read_stream(domain.stream_of(contact_id))
        key = await self.keys.get(contact_id) if events else None
        return events, key

    async def load(
        self, contact_id: str, up_to_version: int | None = None, as_of: datetime | None = None
    ) -> Contact | None:
        events, key = await self.history(contact_id)
        return self.fold(events, key, up_to_version=up_to_version, as_of=as_of)

    @staticmethod
    def fold(
        events: Sequence[RecordedEvent],
        key: bytes | None,
        *,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> Contact | None:
        """The contact from events already read with ``history``."""
        if up_to_version is not None:
            events = [e for e in events if e.version <= up_to_version]
        if as_of is not None:
            events = [e for e in events if e.recorded_at <= as_of]
        return _fold(events, key)

    async def _replayed(self, request_id: str, contact_id: str) -> Contact | None:
        """The result of an earlier execution of this request, if there was one."""
        if not request_id:
            return None
        first = await self.store.get_event(_event_id(request_id, domain.stream_of(contact_id), 0))
        if first is None:
            return None
        return await self.load(contact_id, up_to_version=first.version)

    async def register(
        self, profile: ProfileInput, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Contact:
        contact_id = str(uuid.uuid5(_NS, f"register\n{request_id}") if request_id else uuid.uuid4())
        if (done := await self._replayed(request_id, contact_id)) is not None:
            return done
        return await first_answer(
            self._register(contact_id, profile, request_id, meta),
            lambda: self._replayed(request_id, contact_id),
        )

    async def _register(
        self, contact_id: str, profile: ProfileInput, request_id: str, meta: Mapping[str, Any]
    ) -> Contact:
        decided = domain.decide_register(contact_id, profile)
        after = domain.evolve(None, decided[0][0], decided[0][1], None, 0)  # type: ignore[arg-type]
        for attempt in range(_ATTEMPTS):
            # First attempt: assume the identities are new (no read, one round trip). After a
            # conflict, read the identity streams to name the holder or claim a released one.
            claims = await self._claims(
                contact_id, after.identities(), {}, request_id, meta, optimistic=attempt == 0
            )
            try:
                results = await self._register_once(contact_id, decided, claims, request_id, meta)
                break
            except _CONFLICT:
                if (done := await self._replayed(request_id, contact_id)) is not None:
                    return done
                if attempt == _ATTEMPTS - 1:
                    raise
        at = results[0].recorded_at
        return domain.evolve(None, decided[0][0], decided[0][1], at, results[0].version)  # type: ignore[arg-type]

    async def _register_once(
        self,
        contact_id: str,
        decided: list[domain.Event],
        claims: list[StreamAppend],
        request_id: str,
        meta: Mapping[str, Any],
    ) -> list[AppendResult]:
        """The data key and the events in one transaction where the store allows: one commit,
        and no key without its contact."""
        stream = domain.stream_of(contact_id)
        store = self.store
        if isinstance(store, PostgresEventStore):
            async with store.pool.acquire() as conn, conn.transaction():
                key = (await self.keys.ensure([contact_id], conn))[contact_id]
                events = _events(stream, decided, request_id, meta, key)
                results = await store.append_batch_on(
                    conn, [StreamAppend(stream, events, StreamState.NO_STREAM), *claims]
                )
            store.committed(max(r.position for r in results))
            return results
        key = (await self.keys.ensure([contact_id]))[contact_id]
        events = _events(stream, decided, request_id, meta, key)
        return await store.append_multi(
            [StreamAppend(stream, events, StreamState.NO_STREAM), *claims]
        )

    async def update(
        self,
        contact_id: str,
        paths: Sequence[str],
        profile: ProfileInput,
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Contact:
        return await first_answer(
            self._update(contact_id, paths, profile, etag, request_id, meta),
            lambda: self._replayed(request_id, contact_id),
        )

    async def _update(
        self,
        contact_id: str,
        paths: Sequence[str],
        profile: ProfileInput,
        etag: str,
        request_id: str,
        meta: Mapping[str, Any],
    ) -> Contact:
        stream = domain.stream_of(contact_id)
        for attempt in range(_ATTEMPTS):
            recorded, key = await self.history(contact_id)
            state = _fold(recorded, key)
            if state is None:
                raise NotFound(
                    "CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id
                )
            if request_id:
                done = [e for e in recorded if e.event_id == _event_id(request_id, stream, 0)]
                if done:
                    return _fold([e for e in recorded if e.version <= done[0].version], key)  # type: ignore[return-value]
            if etag and etag != str(state.version):
                raise StaleEtag(
                    "ETAG_MISMATCH",
                    f"etag {etag!r} is stale; the contact is at {state.version}",
                    current_etag=str(state.version),
                )
            decided = domain.decide_update(state, paths, profile)
            if not decided:
                return state
            after = state
            for i, (t, d) in enumerate(decided):
                after = domain.evolve(after, t, d, state.update_time, state.version + i + 1)  # type: ignore[arg-type]
            claim, release = domain.identity_changes(state, after)
            events = _events(stream, decided, request_id, meta, key)
            try:
                appends = await self._claims(contact_id, claim, release, request_id, meta)
                results = await self.store.append_multi(
                    [StreamAppend(stream, events, state.version), *appends]
                )
            except _CONFLICT:
                # With an etag the caller asked for exactly that version: report the conflict.
                # Without one, someone else moved the contact or an identity: try again.
                if etag or attempt == _ATTEMPTS - 1:
                    raise
                continue
            return domain.evolve(
                after,
                domain.UPDATED,
                {"changed_fields": []},
                results[0].recorded_at,  # type: ignore[arg-type]
                results[0].version,
            )
        raise AssertionError("unreachable")

    async def change(
        self,
        contact_id: str,
        decide: Callable[[Contact], list[domain.Event]],
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Contact:
        """A state change with no identity effects (archive, restore)."""
        return await first_answer(
            self._change(contact_id, decide, etag, request_id, meta),
            lambda: self._replayed(request_id, contact_id),
        )

    async def _change(
        self,
        contact_id: str,
        decide: Callable[[Contact], list[domain.Event]],
        etag: str,
        request_id: str,
        meta: Mapping[str, Any],
    ) -> Contact:
        stream = domain.stream_of(contact_id)
        for attempt in range(_ATTEMPTS):
            state, key, done = await self._for_command(contact_id, etag, request_id)
            if done is not None:
                return done
            decided = decide(state)
            if not decided:
                return state
            try:
                r = await self.store.append(
                    stream, _events(stream, decided, request_id, meta, key), state.version
                )
            except _CONFLICT:
                if etag or attempt == _ATTEMPTS - 1:
                    raise
                continue
            return _apply(state, decided, r.recorded_at, r.version)
        raise AssertionError("unreachable")

    async def erase(
        self, contact_id: str, reason: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Contact:
        """ContactErased, the release of every identity and the destruction of the data key,
        in one transaction: never a half-erased contact."""
        return await first_answer(
            self._erase(contact_id, reason, request_id, meta),
            lambda: self._replayed(request_id, contact_id),
        )

    async def _erase(
        self, contact_id: str, reason: str, request_id: str, meta: Mapping[str, Any]
    ) -> Contact:
        stream = domain.stream_of(contact_id)
        for attempt in range(_ATTEMPTS):
            state, _key, done = await self._for_command(contact_id, "", request_id)
            if done is not None:
                return done
            decided = domain.decide_erase(state, reason)
            if not decided:
                return state
            releases = await self._claims(contact_id, {}, state.identities(), request_id, meta)
            appends = [
                StreamAppend(stream, _events(stream, decided, request_id, meta), state.version),
                *releases,
            ]
            try:
                results = await self._append_then(appends, self.keys.destroy, contact_id)
            except _CONFLICT:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return _apply(state, decided, results[0].recorded_at, results[0].version)
        raise AssertionError("unreachable")

    async def merge(
        self,
        survivor_id: str,
        merged_id: str,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Contact:
        """Merge ``merged_id`` into ``survivor_id``: both streams and the moved identities in
        one atomic append. Nothing is destroyed; unmerge restores both."""
        return await first_answer(
            self._merge(survivor_id, merged_id, request_id, meta),
            lambda: self._replayed(request_id, survivor_id),
        )

    async def _merge(
        self, survivor_id: str, merged_id: str, request_id: str, meta: Mapping[str, Any]
    ) -> Contact:
        for attempt in range(_ATTEMPTS):
            survivor, s_key, done = await self._for_command(survivor_id, "", request_id)
            if done is not None:
                return done
            merged, m_key, _ = await self._for_command(merged_id, "", "")
            s_dec, m_dec = domain.decide_merge(survivor, merged)
            moves = [
                await self._transfer(
                    k, getattr(merged, k), merged_id, survivor_id, request_id, meta
                )
                for k in s_dec[0][1]["moved_fields"]
            ]
            pair = ((survivor, s_key, s_dec), (merged, m_key, m_dec))
            try:
                results = await self._append_pair(pair, moves, request_id, meta)
            except _CONFLICT:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return _apply(survivor, s_dec, results[0].recorded_at, results[0].version)
        raise AssertionError("unreachable")

    async def unmerge(
        self, merged_id: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> tuple[Contact, Contact]:
        """Undo a merge: (survivor, merged) as they were before it, identities moved back."""
        return await first_answer(
            self._unmerge(merged_id, request_id, meta),
            lambda: self._unmerge_replayed(request_id, merged_id),
        )

    async def _unmerge_replayed(
        self, request_id: str, merged_id: str
    ) -> tuple[Contact, Contact] | None:
        """Both contacts as an earlier execution of this unmerge left them, if there was one."""
        if not request_id:
            return None
        first = await self.store.get_event(_event_id(request_id, domain.stream_of(merged_id), 0))
        if first is None:
            return None
        survivor = await self._replayed(request_id, first.data["survivor_id"])
        merged = await self.load(merged_id, up_to_version=first.version)
        assert survivor is not None and merged is not None, "unmerge appends to both streams"
        return survivor, merged

    async def _unmerge(
        self, merged_id: str, request_id: str, meta: Mapping[str, Any]
    ) -> tuple[Contact, Contact]:
        for attempt in range(_ATTEMPTS):
            recorded, m_key = await self.history(merged_id)
            merged = _fold(recorded, m_key)
            if merged is None:
                raise NotFound("CONTACT_NOT_FOUND", f"no contact {merged_id}", contact_id=merged_id)
            if not merged.merged_into:
                raise Precondition("NOT_MERGED", f"contact {merged_id} is not merged")
            last_merge = max(e.version for e in recorded if e.type == domain.MERGED)
            before = _fold([e for e in recorded if e.version < last_merge], m_key)
            assert before is not None
            survivor, s_key, _ = await self._for_command(merged.merged_into, "", "")
            s_dec, m_dec = domain.decide_unmerge(survivor, merged, before)
            moves = [
                await self._transfer(
                    k, getattr(before, k), survivor.contact_id, merged_id, request_id, meta
                )
                for k in m_dec[0][1]["restored_fields"]
            ]
            pair = ((survivor, s_key, s_dec), (merged, m_key, m_dec))
            try:
                results = await self._append_pair(pair, moves, request_id, meta)
            except _CONFLICT:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return (
                _apply(survivor, s_dec, results[0].recorded_at, results[0].version),
                _apply(merged, m_dec, results[1].recorded_at, results[1].version),
            )
        raise AssertionError("unreachable")

    async def _append_pair(
        self,
        pair: tuple[tuple[Contact, bytes | None, list[domain.Event]], ...],
        moves: list[StreamAppend],
        request_id: str,
        meta: Mapping[str, Any],
    ) -> list[AppendResult]:
        """Both sides of a merge or unmerge, and the identities that move, in one append."""
        appends = [
            StreamAppend(
                stream := domain.stream_of(state.contact_id),
                _events(stream, decided, request_id, meta, key),
                state.version,
            )
            for state, key, decided in pair
        ]
        return await self.store.append_multi([*appends, *moves])

    async def _transfer(
        self,
        kind: str,
        value: str,
        from_id: str,
        to_id: str,
        request_id: str,
        meta: Mapping[str, Any],
    ) -> StreamAppend:
        """The append that hands one identity from ``from_id`` (or nobody) to ``to_id``."""
        stream = identity_stream(kind, value)
        last = await self.store.read_stream(stream, -1, Direction.BACKWARDS, limit=1)
        holder = (
            last[0].data["contact_id"] if last and last[0].type == domain.IDENTITY_CLAIMED else None
        )
        if holder not in (None, from_id):
            raise Conflict(
                "IDENTITY_TAKEN",
                f"{kind} is now held by contact {holder}",
                contact_id=str(holder),
                field=kind,
            )
        data = {"contact_id": to_id, "kind": kind}
        events = _events(stream, [(domain.IDENTITY_CLAIMED, data)], request_id, meta)
        return StreamAppend(stream, events, last[0].version if last else StreamState.NO_STREAM)

    async def _append_then(
        self,
        appends: list[StreamAppend],
        then: Callable[[str, Any], Awaitable[None]],
        contact_id: str,
    ) -> list[AppendResult]:
        store = self.store
        if isinstance(store, PostgresEventStore):
            async with store.pool.acquire() as conn, conn.transaction():
                results = await store.append_batch_on(conn, appends)
                await then(contact_id, conn)
            store.committed(max(r.position for r in results))
            return results
        # Another event store backend: the key lives in PostgreSQL; destroy it after the append
        # (an interrupted erasure is completed by calling EraseContact again).
        results = await store.append_multi(appends)
        async with self.keys.pool.acquire() as conn:
            await then(contact_id, conn)
        return results

    async def _for_command(
        self, contact_id: str, etag: str, request_id: str
    ) -> tuple[Contact, bytes | None, Contact | None]:
        """Current state and key, or the earlier result of this very request."""
        recorded, key = await self.history(contact_id)
        state = _fold(recorded, key)
        if state is None:
            raise NotFound("CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id)
        if request_id:
            first = _event_id(request_id, domain.stream_of(contact_id), 0)
            done = [e for e in recorded if e.event_id == first]
            if done:
                return state, key, _fold([e for e in recorded if e.version <= done[0].version], key)
        if etag and etag != str(state.version):
            raise StaleEtag(
                "ETAG_MISMATCH",
                f"etag {etag!r} is stale; the contact is at {state.version}",
                current_etag=str(state.version),
            )
        return state, key, None

    async def _claims(
        self,
        contact_id: str,
        claim: Mapping[str, str],
        release: Mapping[str, str],
        request_id: str,
        meta: Mapping[str, Any],
        *,
        optimistic: bool = False,
    ) -> list[StreamAppend]:
        """Appends that claim and release identities; Conflict if another contact holds one.
        ``optimistic`` claims expect a new identity stream without reading it first."""
        out: list[StreamAppend] = []
        for kind, value, type_ in [
            *((k, v, domain.IDENTITY_CLAIMED) for k, v in claim.items()),
            *((k, v, domain.IDENTITY_RELEASED) for k, v in release.items()),
        ]:
            stream = identity_stream(kind, value)
            data = {"contact_id": contact_id, "kind": kind}
            if optimistic and type_ == domain.IDENTITY_CLAIMED:
                events = _events(stream, [(type_, data)], request_id, meta)
                out.append(StreamAppend(stream, events, StreamState.NO_STREAM))
                continue
            last = await self.store.read_stream(stream, -1, Direction.BACKWARDS, limit=1)
            holder = (
                last[0].data["contact_id"]
                if last and last[0].type == domain.IDENTITY_CLAIMED
                else None
            )
            if type_ == domain.IDENTITY_CLAIMED and holder not in (None, contact_id):
                raise Conflict(
                    "IDENTITY_TAKEN",
                    f"{kind} is already held by contact {holder}",
                    contact_id=str(holder),
                    field=kind,
                )
            if type_ == domain.IDENTITY_RELEASED and holder != contact_id:
                continue  # nothing to release
            expected = last[0].version if last else StreamState.NO_STREAM
            out.append(
                StreamAppend(stream, _events(stream, [(type_, data)], request_id, meta), expected)
            )
        return out
