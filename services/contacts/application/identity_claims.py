"""Identity claims: one stream per identity ("contactidentity-<hash>") guards its uniqueness.
A command claims or releases identities with appends at the identity streams' versions, in the
same atomic write as the contact's own events, so two racing claims cannot both win."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.contacts.application.contact_events import NS
from services.contacts.domain import contact as domain
from services.contacts.domain.identity import identity_stream
from shared.application.commands import new_events
from shared.domain.errors import Conflict
from shared.eventstore import EventStore, StreamAppend, StreamState
from shared.eventstore.port import Direction


async def claims(
    store: EventStore,
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
            events = new_events(NS, stream, [(type_, data)], request_id, meta)
            out.append(StreamAppend(stream, events, StreamState.NO_STREAM))
            continue
        last = await store.read_stream(stream, -1, Direction.BACKWARDS, limit=1)
        holder = (
            last[0].data["contact_id"] if last and last[0].type == domain.IDENTITY_CLAIMED else None
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
            StreamAppend(
                stream, new_events(NS, stream, [(type_, data)], request_id, meta), expected
            )
        )
    return out


async def transfer(
    store: EventStore,
    kind: str,
    value: str,
    from_id: str,
    to_id: str,
    request_id: str,
    meta: Mapping[str, Any],
) -> StreamAppend:
    """The append that hands one identity from ``from_id`` (or nobody) to ``to_id``."""
    stream = identity_stream(kind, value)
    last = await store.read_stream(stream, -1, Direction.BACKWARDS, limit=1)
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
    events = new_events(NS, stream, [(domain.IDENTITY_CLAIMED, data)], request_id, meta)
    return StreamAppend(stream, events, last[0].version if last else StreamState.NO_STREAM)
