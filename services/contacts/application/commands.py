"""Command handlers: load, decide, append (with identity claims in the same atomic write, see
identity_claims.py; merging and unmerging in merging.py). Every command answers a retry with
its first result (shared.application.replay)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.contacts.adapters.keys import DataKeys
from services.contacts.application import identity_claims, merging
from services.contacts.application.contact_events import (
    ATTEMPTS,
    CONFLICT,
    NS,
    apply_decided,
    event_id,
    fold_contact,
    new_events,
)
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact, ProfileInput
from shared.application.replay import first_answer
from shared.domain.errors import NotFound, StaleEtag
from shared.eventstore import (
    AppendResult,
    EventStore,
    RecordedEvent,
    StreamAppend,
    StreamState,
)


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
        return fold_contact(events, key)

    async def replayed(self, request_id: str, contact_id: str) -> Contact | None:
        """The result of an earlier execution of this request, if there was one."""
        if not request_id:
            return None
        first = await self.store.get_event(event_id(request_id, domain.stream_of(contact_id), 0))
        if first is None:
            return None
        return await self.load(contact_id, up_to_version=first.version)

    async def register(
        self, profile: ProfileInput, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Contact:
        contact_id = str(uuid.uuid5(NS, f"register\n{request_id}") if request_id else uuid.uuid4())
        if (done := await self.replayed(request_id, contact_id)) is not None:
            return done
        return await first_answer(
            self._register(contact_id, profile, request_id, meta),
            lambda: self.replayed(request_id, contact_id),
        )

    async def _register(
        self, contact_id: str, profile: ProfileInput, request_id: str, meta: Mapping[str, Any]
    ) -> Contact:
        decided = domain.decide_register(contact_id, profile)
        after = domain.evolve(None, decided[0][0], decided[0][1], None, 0)  # type: ignore[arg-type]
        for attempt in range(ATTEMPTS):
            # First attempt: assume the identities are new (no read, one round trip). After a
            # conflict, read the identity streams to name the holder or claim a released one.
            claims = await identity_claims.claims(
                self.store,
                contact_id,
                after.identities(),
                {},
                request_id,
                meta,
                optimistic=attempt == 0,
            )
            try:
                results = await self._register_once(contact_id, decided, claims, request_id, meta)
                break
            except CONFLICT:
                if (done := await self.replayed(request_id, contact_id)) is not None:
                    return done
                if attempt == ATTEMPTS - 1:
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
        async with self.store.transaction() as uow:
            key = (await self.keys.ensure([contact_id], uow.connection))[contact_id]
            events = new_events(stream, decided, request_id, meta, key)
            return await uow.append_multi(
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
            lambda: self.replayed(request_id, contact_id),
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
        for attempt in range(ATTEMPTS):
            state, key, done = await self.for_command(contact_id, etag, request_id)
            if done is not None:
                return done
            decided = domain.decide_update(state, paths, profile)
            if not decided:
                return state
            after = state
            for i, (t, d) in enumerate(decided):
                after = domain.evolve(after, t, d, state.update_time, state.version + i + 1)  # type: ignore[arg-type]
            claim, release = domain.identity_changes(state, after)
            events = new_events(stream, decided, request_id, meta, key)
            try:
                appends = await identity_claims.claims(
                    self.store, contact_id, claim, release, request_id, meta
                )
                results = await self.store.append_multi(
                    [StreamAppend(stream, events, state.version), *appends]
                )
            except CONFLICT:
                # With an etag the caller asked for exactly that version: report the conflict.
                # Without one, someone else moved the contact or an identity: try again.
                if etag or attempt == ATTEMPTS - 1:
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
            lambda: self.replayed(request_id, contact_id),
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
        for attempt in range(ATTEMPTS):
            state, key, done = await self.for_command(contact_id, etag, request_id)
            if done is not None:
                return done
            decided = decide(state)
            if not decided:
                return state
            try:
                r = await self.store.append(
                    stream, new_events(stream, decided, request_id, meta, key), state.version
                )
            except CONFLICT:
                if etag or attempt == ATTEMPTS - 1:
                    raise
                continue
            return apply_decided(state, decided, r.recorded_at, r.version)
        raise AssertionError("unreachable")

    async def erase(
        self, contact_id: str, reason: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Contact:
        """ContactErased, the release of every identity and the destruction of the data key,
        in one transaction: never a half-erased contact."""
        return await first_answer(
            self._erase(contact_id, reason, request_id, meta),
            lambda: self.replayed(request_id, contact_id),
        )

    async def _erase(
        self, contact_id: str, reason: str, request_id: str, meta: Mapping[str, Any]
    ) -> Contact:
        stream = domain.stream_of(contact_id)
        for attempt in range(ATTEMPTS):
            state, _key, done = await self.for_command(contact_id, "", request_id)
            if done is not None:
                return done
            decided = domain.decide_erase(state, reason)
            if not decided:
                return state
            releases = await identity_claims.claims(
                self.store, contact_id, {}, state.identities(), request_id, meta
            )
            appends = [
                StreamAppend(stream, new_events(stream, decided, request_id, meta), state.version),
                *releases,
            ]
            try:
                results = await self._append_then(appends, self.keys.destroy, contact_id)
            except CONFLICT:
                if attempt == ATTEMPTS - 1:
                    raise
                continue
            return apply_decided(state, decided, results[0].recorded_at, results[0].version)
        raise AssertionError("unreachable")

    async def merge(
        self,
        survivor_id: str,
        merged_id: str,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Contact:
        """Merge ``merged_id`` into ``survivor_id`` (see merging.py)."""
        return await merging.merge(self, survivor_id, merged_id, request_id, meta)

    async def unmerge(
        self, merged_id: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> tuple[Contact, Contact]:
        """Undo a merge (see merging.py)."""
        return await merging.unmerge(self, merged_id, request_id, meta)

    async def _append_then(
        self,
        appends: list[StreamAppend],
        then: Callable[[str, Any], Awaitable[None]],
        contact_id: str,
    ) -> list[AppendResult]:
        # One transaction on PostgreSQL. Elsewhere the key is destroyed right after the append
        # (an interrupted erasure is completed by calling EraseContact again).
        async with self.store.transaction() as uow:
            results = await uow.append_multi(appends)
            await then(contact_id, uow.connection)
        return results

    async def for_command(
        self, contact_id: str, etag: str, request_id: str
    ) -> tuple[Contact, bytes | None, Contact | None]:
        """Current state and key, or the earlier result of this very request."""
        recorded, key = await self.history(contact_id)
        state = fold_contact(recorded, key)
        if state is None:
            raise NotFound("CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id)
        if request_id:
            first = event_id(request_id, domain.stream_of(contact_id), 0)
            done = [e for e in recorded if e.event_id == first]
            if done:
                return (
                    state,
                    key,
                    fold_contact([e for e in recorded if e.version <= done[0].version], key),
                )
        if etag and etag != str(state.version):
            raise StaleEtag(
                "ETAG_MISMATCH",
                f"etag {etag!r} is stale; the contact is at {state.version}",
                current_etag=str(state.version),
            )
        return state, key, None
