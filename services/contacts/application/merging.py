"""Merging two contacts into one and undoing it. A merge appends to both contacts' streams and
moves the identities the survivor lacks, in one atomic append; nothing is destroyed, and unmerge
restores both as they were (identities moved back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from services.contacts.application.contact_events import (
    ATTEMPTS,
    CONFLICT,
    apply_decided,
    event_id,
    fold_contact,
    new_events,
)
from services.contacts.application.identity_claims import transfer
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact
from shared.application.replay import first_answer
from shared.domain.errors import NotFound, Precondition
from shared.eventstore import AppendResult, EventStore, StreamAppend

if TYPE_CHECKING:
    from services.contacts.application.commands import ContactCommands


async def merge(
    contacts: ContactCommands,
    survivor_id: str,
    merged_id: str,
    request_id: str,
    meta: Mapping[str, Any],
) -> Contact:
    """Merge ``merged_id`` into ``survivor_id``: both streams and the moved identities in
    one atomic append. Nothing is destroyed; unmerge restores both."""
    return await first_answer(
        _merge(contacts, survivor_id, merged_id, request_id, meta),
        lambda: contacts.replayed(request_id, survivor_id),
    )


async def _merge(
    contacts: ContactCommands,
    survivor_id: str,
    merged_id: str,
    request_id: str,
    meta: Mapping[str, Any],
) -> Contact:
    for attempt in range(ATTEMPTS):
        survivor, s_key, done = await contacts.for_command(survivor_id, "", request_id)
        if done is not None:
            return done
        merged, m_key, _ = await contacts.for_command(merged_id, "", "")
        s_dec, m_dec = domain.decide_merge(survivor, merged)
        moves = [
            await transfer(
                contacts.store, k, getattr(merged, k), merged_id, survivor_id, request_id, meta
            )
            for k in s_dec[0][1]["moved_fields"]
        ]
        pair = ((survivor, s_key, s_dec), (merged, m_key, m_dec))
        try:
            results = await _append_pair(contacts.store, pair, moves, request_id, meta)
        except CONFLICT:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return apply_decided(survivor, s_dec, results[0].recorded_at, results[0].version)
    raise AssertionError("unreachable")


async def unmerge(
    contacts: ContactCommands, merged_id: str, request_id: str, meta: Mapping[str, Any]
) -> tuple[Contact, Contact]:
    """Undo a merge: (survivor, merged) as they were before it, identities moved back."""
    return await first_answer(
        _unmerge(contacts, merged_id, request_id, meta),
        lambda: _unmerge_replayed(contacts, request_id, merged_id),
    )


async def _unmerge_replayed(
    contacts: ContactCommands, request_id: str, merged_id: str
) -> tuple[Contact, Contact] | None:
    """Both contacts as an earlier execution of this unmerge left them, if there was one."""
    if not request_id:
        return None
    first = await contacts.store.get_event(event_id(request_id, domain.stream_of(merged_id), 0))
    if first is None:
        return None
    survivor = await contacts.replayed(request_id, first.data["survivor_id"])
    merged = await contacts.load(merged_id, up_to_version=first.version)
    assert survivor is not None and merged is not None, "unmerge appends to both streams"
    return survivor, merged


async def _unmerge(
    contacts: ContactCommands, merged_id: str, request_id: str, meta: Mapping[str, Any]
) -> tuple[Contact, Contact]:
    for attempt in range(ATTEMPTS):
        recorded, m_key = await contacts.history(merged_id)
        merged = fold_contact(recorded, m_key)
        if merged is None:
            raise NotFound("CONTACT_NOT_FOUND", f"no contact {merged_id}", contact_id=merged_id)
        if not merged.merged_into:
            raise Precondition("NOT_MERGED", f"contact {merged_id} is not merged")
        last_merge = max(e.version for e in recorded if e.type == domain.MERGED)
        before = fold_contact([e for e in recorded if e.version < last_merge], m_key)
        assert before is not None
        survivor, s_key, _ = await contacts.for_command(merged.merged_into, "", "")
        s_dec, m_dec = domain.decide_unmerge(survivor, merged, before)
        moves = [
            await transfer(
                contacts.store,
                k,
                getattr(before, k),
                survivor.contact_id,
                merged_id,
                request_id,
                meta,
            )
            for k in m_dec[0][1]["restored_fields"]
        ]
        pair = ((survivor, s_key, s_dec), (merged, m_key, m_dec))
        try:
            results = await _append_pair(contacts.store, pair, moves, request_id, meta)
        except CONFLICT:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return (
            apply_decided(survivor, s_dec, results[0].recorded_at, results[0].version),
            apply_decided(merged, m_dec, results[1].recorded_at, results[1].version),
        )
    raise AssertionError("unreachable")


async def _append_pair(
    store: EventStore,
    pair: tuple[tuple[Contact, bytes | None, list[domain.Event]], ...],
    moves: list[StreamAppend],
    request_id: str,
    meta: Mapping[str, Any],
) -> list[AppendResult]:
    """Both sides of a merge or unmerge, and the identities that move, in one append."""
    appends = [
        StreamAppend(
            stream := domain.stream_of(state.contact_id),
            new_events(stream, decided, request_id, meta, key),
            state.version,
        )
        for state, key, decided in pair
    ]
    return await store.append_multi([*appends, *moves])
