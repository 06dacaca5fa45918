"""What a contact's own stream says about its consent ledger: whether the ledger may get new
entries, and which contacts (whose ledgers count too) were merged into it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.contacts.domain.consent.events import (
    CONTACT_ABSORBED,
    CONTACT_ABSORPTION_REVERTED,
    CONTACT_ERASED,
    CONTACT_MERGED,
    CONTACT_UNMERGED,
)
from shared.domain.errors import NotFound, Precondition


def check_writable(
    contact_id: str, contact_events: Iterable[tuple[str, Mapping[str, Any]]]
) -> None:
    """Raise unless the contact (given its stream's events) may get new ledger entries: it must
    exist, not be erased, and not be merged into another contact (whose ledger is the one that
    counts: the caller is told which). An archived contact may: withdrawing consent and
    recording bounces must always be possible."""
    exists, erased, survivor = False, False, ""
    for type_, data in contact_events:
        exists = True
        erased = erased or type_ == CONTACT_ERASED
        if type_ == CONTACT_MERGED:
            survivor = data.get("survivor_id", "")
        elif type_ == CONTACT_UNMERGED:
            survivor = ""
    if not exists:
        raise NotFound("CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id)
    if erased:
        raise Precondition(
            "CONTACT_ERASED", f"contact {contact_id} was erased", contact_id=contact_id
        )
    if survivor:
        raise Precondition(
            "CONTACT_MERGED",
            f"contact {contact_id} was merged into {survivor}; record consent there",
            survivor_id=survivor,
        )


def absorbed(contact_events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The contacts merged into this one (and not unmerged), from its own contact stream."""
    ids: dict[str, None] = {}
    for type_, data in contact_events:
        if type_ == CONTACT_ABSORBED:
            ids[data["merged_id"]] = None
        elif type_ == CONTACT_ABSORPTION_REVERTED:
            ids.pop(data["merged_id"], None)
    return list(ids)
