"""Command handlers: load, decide, append (with identity claims in the same atomic write).

Uniqueness of identities is guarded by one stream per identity ("contactidentity-<hash>"): a
registration appends ContactRegistered and IdentityClaimed to those streams in one transaction,
with expected versions, so two racing registrations of one email cannot both win.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact, ProfileInput
from services.contacts.domain.errors import Conflict, NotFound, StaleEtag
from services.contacts.domain.identity import identity_stream
from shared.eventstore import (
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)
from shared.eventstore.port import Direction

_NS = uuid.UUID("6f1c7a3e-2b1d-4f57-9a51-3c2f0e9d8b10")
_ATTEMPTS = 3  # optimistic-concurrency retries when an identity stream moved under us


def _event_id(request_id: str, stream: str, index: int) -> uuid.UUID:
    """Event ids derived from the request id make a retried command exactly-once (AIP-155)."""
    return uuid.uuid5(_NS, f"{request_id}\n{stream}\n{index}")


def _events(
    stream: str, decided: Sequence[domain.Event], request_id: str, meta: Mapping[str, Any]
) -> list[NewEvent]:
    return [
        NewEvent(
            type=t,
            data=d,
            metadata=dict(meta),
            event_id=_event_id(request_id, stream, i) if request_id else uuid.uuid4(),
        )
        for i, (t, d) in enumerate(decided)
    ]


def _fold(events: Sequence[RecordedEvent]) -> Contact | None:
    return domain.fold((e.type, e.data, e.recorded_at, e.version) for e in events)


class ContactCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def load(self, contact_id: str, up_to_version: int | None = None) -> Contact | None:
        events = await self.store.read_stream(domain.stream_of(contact_id))
        if up_to_version is not None:
            events = [e for e in events if e.version <= up_to_version]
        return _fold(events)

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
        decided = domain.decide_register(contact_id, profile)
        stream = domain.stream_of(contact_id)
        events = _events(stream, decided, request_id, meta)
        after = domain.evolve(None, decided[0][0], decided[0][1], None, 0)  # type: ignore[arg-type]
        for attempt in range(_ATTEMPTS):
            # First attempt: assume the identities are new (no read, one round trip). After a
            # conflict, read the identity streams to name the holder or claim a released one.
            claims = await self._claims(
                contact_id, after.identities(), {}, request_id, meta, optimistic=attempt == 0
            )
            try:
                results = await self.store.append_multi(
                    [StreamAppend(stream, events, StreamState.NO_STREAM), *claims]
                )
                break
            except WrongExpectedVersion:
                if (done := await self._replayed(request_id, contact_id)) is not None:
                    return done
                if attempt == _ATTEMPTS - 1:
                    raise
        at = results[0].recorded_at
        return domain.evolve(None, decided[0][0], decided[0][1], at, results[0].version)  # type: ignore[arg-type]

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
        stream = domain.stream_of(contact_id)
        for attempt in range(_ATTEMPTS):
            recorded = await self.store.read_stream(stream)
            state = _fold(recorded)
            if state is None:
                raise NotFound(
                    "CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id
                )
            if request_id:
                done = [e for e in recorded if e.event_id == _event_id(request_id, stream, 0)]
                if done:
                    return _fold([e for e in recorded if e.version <= done[0].version])  # type: ignore[return-value]
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
            events = _events(stream, decided, request_id, meta)
            try:
                appends = await self._claims(contact_id, claim, release, request_id, meta)
                results = await self.store.append_multi(
                    [StreamAppend(stream, events, state.version), *appends]
                )
            except WrongExpectedVersion:
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
