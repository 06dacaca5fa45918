"""Merging two contacts into one and undoing it. A merge appends to both contacts' streams and
moves the identities the survivor lacks, in one atomic append; nothing is destroyed, and unmerge
restores both as they were (identities moved back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from services.contacts.application.identity_claims import transfer
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact
from shared.application.commands import FINGERPRINT, RequestIdReused, apply, event_id
from shared.domain.errors import Precondition

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
    runner, agg = contacts.runner, contacts.contact
    fingerprint = meta.get(FINGERPRINT, "")

    async def attempt(_n: int) -> Contact:
        s = await runner.load(agg, survivor_id)
        if (done := runner.replayed(agg, s, request_id, fingerprint)) is not None:
            return done.state
        survivor = runner.existing(agg, s)
        m = await runner.load(agg, merged_id)
        merged = runner.existing(agg, m)
        s_dec, m_dec = domain.decide_merge(survivor, merged)
        moves = [
            await transfer(
                contacts.store, k, getattr(merged, k), merged_id, survivor_id, request_id, meta
            )
            for k in s_dec[0][1]["moved_fields"]
        ]
        results = await runner.write(
            [
                runner.append_of(agg, s, s_dec, request_id, meta),
                runner.append_of(agg, m, m_dec, request_id, meta),
                *moves,
            ]
        )
        return apply(agg, survivor, s_dec, results[0].recorded_at, results[0].version)

    return await runner.retrying(
        attempt, lambda: contacts.replayed(request_id, survivor_id, fingerprint)
    )


async def unmerge(
    contacts: ContactCommands, merged_id: str, request_id: str, meta: Mapping[str, Any]
) -> tuple[Contact, Contact]:
    """Undo a merge: (survivor, merged) as they were before it, identities moved back."""
    runner, agg = contacts.runner, contacts.contact

    async def attempt(_n: int) -> tuple[Contact, Contact]:
        m = await runner.load(agg, merged_id)
        merged = runner.existing(agg, m)
        if not merged.merged_into:
            raise Precondition("NOT_MERGED", f"contact {merged_id} is not merged")
        last_merge = max(e.version for e in m.events if e.type == domain.MERGED)
        before = contacts.fold([e for e in m.events if e.version < last_merge], m.key)
        assert before is not None
        s = await runner.load(agg, merged.merged_into)
        survivor = runner.existing(agg, s)
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
        results = await runner.write(
            [
                runner.append_of(agg, s, s_dec, request_id, meta),
                runner.append_of(agg, m, m_dec, request_id, meta),
                *moves,
            ]
        )
        return (
            apply(agg, survivor, s_dec, results[0].recorded_at, results[0].version),
            apply(agg, merged, m_dec, results[1].recorded_at, results[1].version),
        )

    return await runner.retrying(
        attempt, lambda: _unmerge_replayed(contacts, request_id, merged_id, meta)
    )


async def _unmerge_replayed(
    contacts: ContactCommands, request_id: str, merged_id: str, meta: Mapping[str, Any]
) -> tuple[Contact, Contact] | None:
    """Both contacts as an earlier execution of this unmerge left them, if there was one."""
    if not request_id:
        return None
    first_id = event_id(contacts.contact.namespace, request_id, domain.stream_of(merged_id), 0)
    first = await contacts.store.get_event(first_id)
    if first is None:
        return None
    fingerprint = meta.get(FINGERPRINT, "")
    theirs = first.metadata.get(FINGERPRINT, fingerprint)
    if first.type != domain.UNMERGED or theirs != fingerprint:  # another request's event
        raise RequestIdReused(f"request id {request_id!r} was used by another request")
    survivor = await contacts.replayed(request_id, first.data["survivor_id"])
    merged = await contacts.load(merged_id, up_to_version=first.version)
    assert survivor is not None and merged is not None, "unmerge appends to both streams"
    return survivor, merged
