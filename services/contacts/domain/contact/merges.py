"""Merging one contact into another, and undoing it: each decides events for both streams."""

from __future__ import annotations

from services.contacts.domain.contact.state import (
    ABSORBED,
    ABSORPTION_REVERTED,
    MERGED,
    UNMERGED,
    Contact,
    Event,
)
from services.contacts.domain.identity import KINDS
from shared.domain.errors import Invalid, Precondition


def decide_merge(survivor: Contact, merged: Contact) -> tuple[list[Event], list[Event]]:
    """Events for (survivor stream, merged stream). Identities the survivor lacks move to it;
    the others stay claimed by the merged contact, whose id now points at the survivor."""
    if survivor.contact_id == merged.contact_id:
        raise Invalid([("merged_id", "SAME_CONTACT", "a contact cannot be merged with itself")])
    for c in (survivor, merged):
        if c.erased:
            raise Precondition("CONTACT_ERASED", f"contact {c.contact_id} was erased")
        if c.merged_into:
            raise Precondition(
                "CONTACT_MERGED",
                f"contact {c.contact_id} is already merged into {c.merged_into}",
                survivor_id=c.merged_into,
            )
    moved = [k for k in KINDS if getattr(merged, k) and not getattr(survivor, k)]
    values = {k: getattr(merged, k) for k in moved}
    return (
        [
            (
                ABSORBED,
                {
                    "contact_id": survivor.contact_id,
                    "merged_id": merged.contact_id,
                    "moved_fields": moved,
                    **values,
                },
            )
        ],
        [
            (
                MERGED,
                {
                    "contact_id": merged.contact_id,
                    "survivor_id": survivor.contact_id,
                    "moved_fields": moved,
                },
            )
        ],
    )


def decide_unmerge(
    survivor: Contact, merged: Contact, before: Contact
) -> tuple[list[Event], list[Event]]:
    """Undo a merge. ``before`` is the merged contact as it was just before the merge: its moved
    identities come back to it, and the survivor lets go of those it still holds."""
    if merged.erased:
        raise Precondition("CONTACT_ERASED", f"contact {merged.contact_id} was erased")
    if merged.merged_into != survivor.contact_id:
        raise Precondition("NOT_MERGED", f"contact {merged.contact_id} is not merged")
    moved = [k for k in KINDS if getattr(before, k) and not getattr(merged, k)]
    cleared = [k for k in moved if getattr(survivor, k) == getattr(before, k)]
    return (
        [
            (
                ABSORPTION_REVERTED,
                {
                    "contact_id": survivor.contact_id,
                    "merged_id": merged.contact_id,
                    "cleared_fields": cleared,
                },
            )
        ],
        [
            (
                UNMERGED,
                {
                    "contact_id": merged.contact_id,
                    "survivor_id": survivor.contact_id,
                    "restored_fields": moved,
                    **{k: getattr(before, k) for k in moved},
                },
            )
        ],
    )
